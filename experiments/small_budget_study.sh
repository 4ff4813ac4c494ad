#!/usr/bin/env bash
# The small-budget study: the small-budget recipe against the paper's ELECTRA, MLM and random initialisation
# at matched pre-training compute, up to 1e14 FLOPs (results: docs/experiments.md, "The small-budget recipe").
#
#   experiments/small_budget_study.sh OUT [BUDGETS] [SEEDS]
#
# Same data and probes as compute_matched.sh (prepare_shared.sh). Arms: small_budget:electra (the recipe),
# paper:electra and paper:mlm, the two paper arms at peak learning rate 1e-3 as in compute_matched.sh (the
# recipe sets 1e-3 itself); plus from-scratch fine-tuning per seed. Evaluations every 250 steps, so each
# run's metrics.jsonl traces eval_unigram_auc against FLOPs (experiments/yardstick_vs_flops.py).
# Cells run seed by seed, two at a time with one thread each; at 1e14 one cell pre-trains for about an
# hour, so the grid takes several sessions. To resume on a fresh machine, restore what is committed under
# experiments/results/small_budget_study/ before running the same command with OUT=/work/exp/sb (study.json
# records absolute paths): tok/ into OUT/tok (the WordPiece trainer breaks ties differently from run to
# run, so the data is rebuilt from this exact vocabulary), study.json and cells/ into OUT/study/.
set -euo pipefail
OUT=$1; BUDGETS=${2:-1e14,1e13}; SEEDS=${3:-1,2,3}
SHARED=${SHARED:-../shared/data}
"$(dirname "$0")/prepare_shared.sh" "$OUT"
POS=$OUT/brown_pos_train6k.conll
T=$SHARED/tasks
electra study --data "$OUT/data" --out "$OUT/study" --preset tiny \
  --objectives small_budget:electra,paper:mlm,paper:electra --budgets "$BUDGETS" --seeds "$SEEDS" --baseline \
  --jobs 2 --set train.eval_every=250 --set paper:mlm@train.learning_rate=1e-3 \
  --set paper:electra@train.learning_rate=1e-3 \
  --probe "rotten_tomatoes=classification:$T/rotten_tomatoes/train.tsv:$T/rotten_tomatoes/dev.tsv" \
  --probe "brown_pos6k=tagging:$POS:$T/brown_pos/dev.conll"
