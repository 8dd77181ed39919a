# The GPU check in one call: bash .devpkg/run.sh [cuda|cpu]  (cpu: --tiny, a rehearsal here).
# 2026-11-29 on an H200: about 4 minutes (README, Benchmarks, "On a GPU").
set -o pipefail
export PYTHONUNBUFFERED=1
DEV=${1:-cuda}
PY=${PY:-python3}
OUT=${OUT:-/tmp/devout}; mkdir -p "$OUT"
if [ "$DEV" = cuda ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .devpkg/whl/*.whl || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  TINY=""; SHAPE="bert-base"
else
  TINY="--tiny"; SHAPE="bert-base (tiny)"
fi
ROOT=$PWD; export PYTHONPATH=/tmp/site:$ROOT/src
$PY .devpkg/minilm.py fp32 .devpkg/minilm /tmp/minilm || exit 1
$PY -c "import torch, transformers, pydantic; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
cd "$ROOT/benchmarks"
date -u
timeout 300 $PY gpu.py --device "$DEV" $TINY --finetune --model /tmp/minilm \
  --data ../.devpkg/data/train.csv 2>&1 | tee "$OUT/gpu.log"
date -u
timeout 120 $PY gpu.py --device "$DEV" $TINY --compile --shapes "$SHAPE" 2>&1 | tee "$OUT/compile.log"
date -u
