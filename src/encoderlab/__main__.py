"""`python -m encoderlab ...` (also what `torchrun -m encoderlab` runs)."""

from encoderlab.cli import main

if __name__ == "__main__":
    main()
