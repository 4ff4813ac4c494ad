#!/usr/bin/env bash
# Issue 21, secondary check (experiments/results/small_budget_study/10_epochs/criteria_*.txt): the 1e14 recipe,
# MLM, paper's ELECTRA and from-scratch cells of the small-budget study, seeds 1-3, re-probed with 10
# fine-tuning epochs instead of 3, everything else as the study's probe (the paper's ELECTRA was added a session
# later, once its seeds 2-3 existed).
#
#   experiments/probe_10_epochs.sh SB_OUT PROBE [OUT]      PROBE: rotten_tomatoes | brown_pos6k
#
# SB_OUT is small_budget_study_more_seeds.sh's OUT (its study/ holds seed 1, study14/ and study14pe/ seeds 2-3,
# and brown_pos_train6k.conll). Two fine-tunings at a time, one thread each; a finished one is kept on rerun.
set -uo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
S=$1; PROBE=$2; OUT=${3:-$S/probe10/$PROBE}; T=${SHARED:-../shared/data}/tasks
case $PROBE in
  rotten_tomatoes) TASK=classification; TRAIN=$T/rotten_tomatoes/train.tsv; DEV=$T/rotten_tomatoes/dev.tsv ;;
  brown_pos6k) TASK=tagging; TRAIN=$S/brown_pos_train6k.conll; DEV=$T/brown_pos/dev.conll ;;
  *) echo "probe_10_epochs.sh: PROBE must be rotten_tomatoes or brown_pos6k, not '$PROBE'" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
jobs_list() {
  for s in 1 2 3; do
    if [ $s = 1 ]; then d=study; else d=study14; fi
    echo "recipe-s$s $S/$d/pretrain/small_budget-electra-1e14-s$s $s pretrained"
    echo "mlm-s$s $S/$d/pretrain/paper-mlm-1e14-s$s $s pretrained"
    echo "scratch-s$s $S/study/pretrain/architecture $s scratch"
    if [ $s = 1 ]; then d=study; else d=study14pe; fi
    echo "paper-s$s $S/$d/pretrain/paper-electra-1e14-s$s $s pretrained"
  done
}
run_one() {
  name=$1 model=$2 seed=$3 init=$4
  [ -f "$OUT/$name/results.json" ] && return 0
  rm -rf "$OUT/$name"
  electra finetune --model "$model" --task $TASK --train "$TRAIN" --dev "$DEV" --out "$OUT/$name" \
    --set seed=$seed --set init=$init --set epochs=10 > "$OUT/$name.log" 2>&1 || echo "FAILED $name"
}
export -f run_one; export OUT TASK TRAIN DEV
jobs_list | xargs -P 2 -L 1 bash -c 'run_one "$@"' _
