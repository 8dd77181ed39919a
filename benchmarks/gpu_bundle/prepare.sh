#!/bin/bash
# Prepares .devpkg/ (git-ignored through .git/info/exclude) for one call of a lent GPU machine
# whose Python image lacks pydantic and cannot reach a registry: the wheels encoderlab needs
# there, MiniLM in fp16 (under the 64 MiB a call may carry; run.sh converts it back to fp32),
# and the tweets csv. Then, with the `device` tool:  run  bash .devpkg/run.sh  carry [".devpkg"]
# Rehearse here first:  PY=.venv/bin/python bash .devpkg/run.sh cpu
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.devpkg/' .git/info/exclude || echo '/.devpkg/' >> .git/info/exclude
rm -rf .devpkg && mkdir -p .devpkg/minilm .devpkg/data
PIP="python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp"
$PIP --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .devpkg/whl \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  typing-extensions==4.16.0
cp ../shared/data/disaster_tweets/train.csv .devpkg/data/
.venv/bin/python benchmarks/gpu_bundle/minilm.py fp16 .devpkg/minilm
cp benchmarks/gpu_bundle/run.sh benchmarks/gpu_bundle/minilm.py .devpkg/
du -sh .devpkg
