"""`python -m encoderlab ...` (also what `torchrun -m encoderlab` runs)."""

from encoderlab.cli import main

main()
