#!/usr/bin/env bash
# The shared-data inputs of the compute-matched studies (compute_matched.sh, small_budget_study.sh):
#
#   experiments/prepare_shared.sh OUT
#
# an 8k WordPiece vocabulary trained on ../shared/data/corpus (OUT/tok), the corpus packed into examples of
# 128 (OUT/data), and OUT/brown_pos_train6k.conll: the first 6,000 brown_pos training sentences plus, for any
# dev tag they lack, the first later sentence that has it. Each step is skipped when its output exists.
set -euo pipefail
OUT=$1
SHARED=${SHARED:-../shared/data}
mkdir -p "$OUT"
[ -d "$OUT/tok" ] || electra tokenizer train --input "$SHARED/corpus" --vocab-size 8000 --out "$OUT/tok"
[ -d "$OUT/data" ] || electra data build --input "$SHARED/corpus" --tokenizer "$OUT/tok" --max-seq-length 128 \
  --out "$OUT/data"
POS=$OUT/brown_pos_train6k.conll
[ -f "$POS" ] || python3 "$(dirname "$0")/conll_slice.py" "$SHARED/tasks/brown_pos/train.conll" \
  "$SHARED/tasks/brown_pos/dev.conll" 6000 "$POS"
