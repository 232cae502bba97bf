#!/usr/bin/env bash
# The prepared GPU check: what ONE device-tool call runs (benchmarks/GPU.md gives the call: command, carry, timeout).
#
#   bash benchmarks/gpu_check.sh [DEADLINE_S [accelerator.py options...]]    # default deadline 420 s
#
# 1. installs jieba from the carried bundle (.gpu_bundle/jieba-*.whl; the GPU image lacks it and has no network) into
#    $SITE, and pytest (.gpu_bundle/test-wheels) where the image lacks it; on a machine of your own, nothing is needed,
# 2. unpacks the carried data (.gpu_bundle/data: the two datasets gzipped, and a tokenization cache) into $GPU_DATA and
#    points JAXSENTI_DATA_DIR / JAXSENTI_CACHE at it (the machine cannot see ../shared),
# 3. makes jaxsenti.configs importable from the checkout, which is not pip-installed there,
# 4. runs benchmarks/accelerator.py --out $OUT under the deadline (and a hard `timeout` 20 s later), with this whole
#    log in $OUT/gpu_check.log. $OUT then holds 8 files: gpu_check.log, accelerator.json, RESULTS-gpu.md and
#    bert_mlm_small/ (config.json, model.safetensors, tokenizer.json, tokenizer_config.json, pretraining.json).
# The bundle is built by tools/gpu_bundle.py; tried on a CPU with: OUT=/tmp/o PYTHON=.venv/bin/python bash THIS 300 --smoke
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT must name the folder whose files come back (the device tool sets it)}"
DEADLINE=${1:-420}
shift $(( $# > 0 ? 1 : 0 ))
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
DATA=${GPU_DATA:-/tmp/jaxsenti-gpu-data}
mkdir -p "$OUT"
{
  echo "== gpu_check $(date -Is), deadline ${DEADLINE}s, $($PY -V 2>&1)"
  if compgen -G ".gpu_bundle/jieba-*.whl" > /dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu_bundle/jieba-*.whl || exit 3
    # pytest for the GPU-only tests, where the image lacks it (a failure here only skips those tests)
    $PY -c "import pytest" 2>/dev/null || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target "$SITE" .gpu_bundle/test-wheels/*.whl || echo "pytest wheels did not install: GPU-only tests skipped"
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "no .gpu_bundle/ carried: jieba must be installed already"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  if [ -d .gpu_bundle/data ]; then  # the bundle's data, unpacked (the datasets travel gzipped)
    export JAXSENTI_CACHE="$DATA/cache"  # where the carried tokenization cache lands
    mkdir -p "$DATA" && cp -r .gpu_bundle/data/. "$DATA/" && \
      $PY -c "import gzip, pathlib, shutil, sys
for gz in pathlib.Path(sys.argv[1]).glob('*.gz'):
    with gzip.open(gz) as f, open(gz.with_suffix(''), 'wb') as g: shutil.copyfileobj(f, g)
    gz.unlink()" "$DATA" || exit 4
  elif [ -n "${JAXSENTI_DATA_DIR:-}" ]; then
    DATA=$JAXSENTI_DATA_DIR  # your own machine: the datasets where you keep them
  else
    echo "no .gpu_bundle/ carried and no JAXSENTI_DATA_DIR: run tools/gpu_bundle.py and carry .gpu_bundle"; exit 4
  fi
  [ -f "$DATA/dianping.csv" ] || { echo "no dianping.csv in $DATA"; exit 4; }
  export JAXSENTI_DATA_DIR="$DATA" JAXSENTI_NO_DOWNLOAD=1
  export MPLBACKEND=Agg PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=1
  # pyproject maps the package jaxsenti.configs to configs/; without an install, link it where the install would put it
  $PY -c "import jaxsenti.configs" 2>/dev/null || ln -sfn ../configs jaxsenti/configs
  $PY -c "import jax, jieba, jaxsenti.configs; print('jax', jax.__version__, '| jieba', jieba.__version__)" || exit 5
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm,clocks.max.sm --format=csv
  fi
  timeout -k 10 $((DEADLINE + 20)) $PY benchmarks/accelerator.py --out "$OUT" --deadline "$DEADLINE" "$@"
  rc=$?
  echo "== accelerator.py exit $rc after ${SECONDS}s; \$OUT holds:"
  (cd "$OUT" && find . -type f -printf '%s\t%p\n' | sort -k2)
  exit $rc
} 2>&1 | tee "$OUT/gpu_check.log"
