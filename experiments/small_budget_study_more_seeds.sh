#!/usr/bin/env bash
# The small-budget study, later seeds: seeds 2-3 of small_budget_study.sh, run as separate grids whose cells
# are merged into OUT/study/cells (same cell names, same data, probes and settings):
#
#   experiments/small_budget_study_more_seeds.sh OUT
#
# - OUT/study14: seeds 2 and 3 of the decisive pair at 1e14, the recipe (small_budget:electra) and MLM
#   (paper:mlm, lr 1e-3), plus from-scratch seed 3 (run first: the pair that decides the study's target);
# - OUT/study14pe: seeds 2 and 3 of paper:electra at 1e14 (lr 1e-3), run a session later;
# - OUT/study13s3: seed 3 of the three arms at 1e13 (no --baseline: from-scratch seed 3 is study14's).
# OUT must hold what small_budget_study.sh prepared (prepare_shared.sh: OUT/data, OUT/brown_pos_train6k.conll).
# Then: cp OUT/study14/cells/*.json OUT/study14pe/cells/*.json OUT/study13s3/cells/*.json OUT/study/cells/
# and write the results with electra.study.write_results (docs/experiments.md). study14 reruns from-scratch
# seed 2 (deterministic: the same scores as OUT/study's; the session's run was given that cell's file instead).
set -euo pipefail
OUT=$1
T=${SHARED:-../shared/data}/tasks; POS=$OUT/brown_pos_train6k.conll
common=(--data "$OUT/data" --preset tiny --jobs 2 --set train.eval_every=250
  --probe "rotten_tomatoes=classification:$T/rotten_tomatoes/train.tsv:$T/rotten_tomatoes/dev.tsv"
  --probe "brown_pos6k=tagging:$POS:$T/brown_pos/dev.conll")
# A --set scoped to an arm is refused in a study without that arm, so each grid names the lr of its own arms.
electra study --out "$OUT/study14" --objectives small_budget:electra,paper:mlm --budgets 1e14 --seeds 2,3 --baseline \
  "${common[@]}" --set paper:mlm@train.learning_rate=1e-3
electra study --out "$OUT/study13s3" --objectives small_budget:electra,paper:mlm,paper:electra --budgets 1e13 \
  --seeds 3 "${common[@]}" --set paper:mlm@train.learning_rate=1e-3 --set paper:electra@train.learning_rate=1e-3
electra study --out "$OUT/study14pe" --objectives paper:electra --budgets 1e14 --seeds 2,3 "${common[@]}" \
  --set paper:electra@train.learning_rate=1e-3
