#!/usr/bin/env bash
# The small-budget study's secondary checks (experiments/results/small_budget_study/*/criteria*.txt): the
# 1e14 cells of the study (the recipe, MLM, the paper's ELECTRA) and the from-scratch start, seeds 1-3, re-probed
# with other fine-tuning settings, everything else as the study's probe: `electra study --reprobe`.
#
#   experiments/reprobe_1e14.sh SB_OUT PROBE NAME KEY=VALUE [KEY=VALUE ...]    PROBE: rotten_tomatoes | brown_pos6k
#
# e.g. `... exp/sb rotten_tomatoes epochs10 epochs=10` (the 10-epoch check) or
# `... exp/sb brown_pos6k nodecay layerwise_lr_decay=1.0`; KEY=VALUE go to `electra finetune --set`. SB_OUT is
# small_budget_study_more_seeds.sh's OUT: seed 1 was pre-trained in SB_OUT/study, seeds 2-3 in SB_OUT/study14 (the
# recipe, MLM, from scratch) and SB_OUT/study14pe (the paper's ELECTRA), so each cell is re-probed in the study
# that holds its run. Two fine-tunings at a time, one thread each; a rerun keeps the finished ones. Results:
# SB_OUT/{study,study14,study14pe}/reprobes/NAME/ (cells/*.json, results.csv).
set -euo pipefail
if [ $# -lt 4 ]; then echo "usage: reprobe_1e14.sh SB_OUT PROBE NAME KEY=VALUE [KEY=VALUE ...]" >&2; exit 2; fi
S=$1; PROBE=$2; NAME=$3; shift 3
sets=(); for kv in "$@"; do sets+=(--finetune-set "$kv"); done
common=(--reprobe "$NAME" --probe "$PROBE" --budgets 1e14 --jobs 2 "${sets[@]}")
electra study --out "$S/study" --seeds 1 --objectives small_budget:electra,paper:mlm,paper:electra,scratch "${common[@]}"
electra study --out "$S/study14" --seeds 2,3 --objectives small_budget:electra,paper:mlm,scratch "${common[@]}"
electra study --out "$S/study14pe" --seeds 2,3 --objectives paper:electra "${common[@]}"
