#!/usr/bin/env bash
# ELECTRA against MLM at matched pre-training compute (results: docs/experiments.md).
#
#   experiments/compute_matched.sh OUT [BUDGETS] [SEEDS]
#
# tiny preset, 8k WordPiece vocabulary trained on ../shared/data/corpus, 3 FLOPs budgets x 3 seeds x
# {electra, mlm}, plus from-scratch fine-tuning per seed; probes: rotten_tomatoes (all of train) and
# brown_pos on a 6,000-sentence slice of train (the first 6,000 sentences plus, for any dev tag they
# lack, the first later sentence that has it), full dev sets. 2 cells at a time, one thread each.
set -euo pipefail
OUT=$1; BUDGETS=${2:-2e12,6e12,1.8e13}; SEEDS=${3:-1,2,3}
SHARED=${SHARED:-../shared/data}
"$(dirname "$0")/prepare_shared.sh" "$OUT"
POS=$OUT/brown_pos_train6k.conll
T=$SHARED/tasks
electra study --data "$OUT/data" --out "$OUT/study" --preset tiny --objectives electra,mlm --budgets "$BUDGETS" \
  --seeds "$SEEDS" --baseline --jobs 2 --set train.learning_rate=1e-3 \
  --probe "rotten_tomatoes=classification:$T/rotten_tomatoes/train.tsv:$T/rotten_tomatoes/dev.tsv" \
  --probe "brown_pos6k=tagging:$POS:$T/brown_pos/dev.conll"
