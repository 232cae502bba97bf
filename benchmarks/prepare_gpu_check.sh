#!/usr/bin/env bash
# Prepares, on this machine, what the GPU check (benchmarks/gpu_check.sh) carries to the device machine. Run it in the
# checkout the GPU session is started from (the device tool sends that checkout, not a helper's worktree):
#
#   PYTHON=.venv/bin/python JAXSENTI_DATA_DIR=../shared/data bash benchmarks/prepare_gpu_check.sh
#
#   .whl/       jieba's wheel, the version installed here (pure Python, py3-none-any; the GPU image has no jieba)
#   .gpu_data/  dianping.csv, online_shopping_10_cats.csv and cache/: the bert_mlm_small corpus's jieba + WordPiece
#               tokenization, which saves about a minute of device time (a cache miss there only costs that minute)
#
# Both are git-ignored (.gitignore; else this adds them to .git/info/exclude); neither is committed. Prints what will travel
# (the device tool's limit is 64 MiB: tracked and untracked-not-ignored files plus the carried folders).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DATA=${JAXSENTI_DATA_DIR:-../shared/data}
JIEBA=$($PY -c "import jieba; print(jieba.__version__)")  # the cache keys include jieba's version: the same one there
rm -rf .whl .gpu_data
mkdir -p .whl .gpu_data/cache
$PY -m pip wheel -q --no-deps "jieba==$JIEBA" -w .whl
$PY -m pip install -q --dry-run --no-index --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --target /tmp/prepare-gpu-check-dry .whl/jieba-*.whl  # installs on the device's Python 3.12 (tags)
cp "$DATA/dianping.csv" "$DATA/online_shopping_10_cats.csv" .gpu_data/
env -u JAXSENTI_BERT_TOKENIZER_DIR JAXSENTI_DATA_DIR="$PWD/.gpu_data" JAXSENTI_CACHE="$PWD/.gpu_data/cache" \
    PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" $PY - <<'PYEOF'
from jaxsenti import config
from jaxsenti.data.corpus import tokenize_corpus
from jaxsenti.data.encoders import tokenizer_source
from jaxsenti.models.hf_bert import load_tokenizer
from jaxsenti.pretrain import build_corpus

cfg = config.load_config("bert_mlm_small")  # what gpu_check.sh pretrains: the same corpus, tokenizer and jieba
corpus = build_corpus(cfg.corpus, cfg.seed)
tokenize_corpus(corpus.texts, load_tokenizer(tokenizer_source(cfg.task.tokenizer, None)), corpus_sha256=corpus.sha256)
print(f"cached the tokenization of {len(corpus):,} texts")
PYEOF
for dir in .whl .gpu_data; do  # a checkout whose .gitignore predates these lines: ignore them locally
  if ! git check-ignore -q "$dir/x"; then
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")" && echo "/$dir/" >> "$exclude"
  fi
done
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | awk '$2 == "total" {s += $1} END {print s + 0}')
carried=$(du -scb .whl .gpu_data | awk '$2 == "total" {print $1}')
du -sh .whl/* .gpu_data/* .gpu_data/cache/*
awk -v t="$tree" -v c="$carried" 'BEGIN {printf "travels: %.1f MiB (tree %.1f + carried %.1f; limit 64)\n", (t + c) / 2^20, t / 2^20, c / 2^20;
                                        exit (t + c > 64 * 2^20)}'
