#!/usr/bin/env bash
# The small-budget study's secondary checks (experiments/results/small_budget_study/*/criteria*.txt): the
# 1e14 cells of the study (the recipe, MLM, the paper's ELECTRA) and the from-scratch start, seeds 1-3, re-probed
# with other fine-tuning settings, everything else as the study's probe.
#
#   experiments/reprobe_1e14.sh SB_OUT PROBE OUT KEY=VALUE [KEY=VALUE ...]    PROBE: rotten_tomatoes | brown_pos6k
#
# e.g. `... exp/sb rotten_tomatoes exp/sb/probe10/rotten_tomatoes epochs=10` (the 10-epoch check) or
# `... exp/sb brown_pos6k exp/sb/nodecay/brown_pos6k layerwise_lr_decay=1.0`; KEY=VALUE go to `electra finetune
# --set`. SB_OUT is small_budget_study_more_seeds.sh's OUT (its study/ holds seed 1, study14/ and study14pe/
# seeds 2-3, and brown_pos_train6k.conll). Two fine-tunings at a time, one thread each; a finished one is kept
# on rerun. Result: OUT/ARM-sSEED/results.json.
set -uo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [ $# -lt 4 ]; then echo "usage: reprobe_1e14.sh SB_OUT PROBE OUT KEY=VALUE [KEY=VALUE ...]" >&2; exit 2; fi
S=$1; PROBE=$2; OUT=$3; shift 3; T=${SHARED:-../shared/data}/tasks
SETS=""; for kv in "$@"; do SETS="$SETS --set $kv"; done
case $PROBE in
  rotten_tomatoes) TASK=classification; TRAIN=$T/rotten_tomatoes/train.tsv; DEV=$T/rotten_tomatoes/dev.tsv ;;
  brown_pos6k) TASK=tagging; TRAIN=$S/brown_pos_train6k.conll; DEV=$T/brown_pos/dev.conll ;;
  *) echo "reprobe_1e14.sh: PROBE must be rotten_tomatoes or brown_pos6k, not '$PROBE'" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
jobs_list() {
  for s in 1 2 3; do
    if [ $s = 1 ]; then d=study; p=study; else d=study14; p=study14pe; fi
    echo "recipe-s$s $S/$d/pretrain/small_budget-electra-1e14-s$s $s pretrained"
    echo "mlm-s$s $S/$d/pretrain/paper-mlm-1e14-s$s $s pretrained"
    echo "scratch-s$s $S/study/pretrain/architecture $s scratch"
    echo "paper-s$s $S/$p/pretrain/paper-electra-1e14-s$s $s pretrained"
  done
}
run_one() {
  name=$1 model=$2 seed=$3 init=$4
  [ -f "$OUT/$name/results.json" ] && return 0
  rm -rf "$OUT/$name"
  # shellcheck disable=SC2086  # SETS is a list of --set KEY=VALUE words
  electra finetune --model "$model" --task $TASK --train "$TRAIN" --dev "$DEV" --out "$OUT/$name" \
    --set seed=$seed --set init=$init $SETS > "$OUT/$name.log" 2>&1 || echo "FAILED $name"
}
export -f run_one; export OUT TASK TRAIN DEV SETS
jobs_list | xargs -P 2 -L 1 bash -c 'run_one "$@"' _
