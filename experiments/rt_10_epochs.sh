#!/usr/bin/env bash
# Issue 21 secondary analysis (criteria_rt10.txt): rotten_tomatoes with 10 fine-tuning epochs for the 1e14
# recipe, MLM and scratch cells, seeds 1-3. Run from the repository root; S is small_budget_study_more_seeds.sh's OUT.
set -uo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
date
S=${1:-exp/sb}; T=${SHARED:-../shared/data}/tasks; OUT=${2:-exp/rt10}
mkdir -p $OUT
jobs_list() {
  for s in 1 2 3; do
    if [ $s = 1 ]; then d=study; else d=study14; fi
    echo "recipe-s$s $S/$d/pretrain/small_budget-electra-1e14-s$s $s pretrained"
    echo "mlm-s$s $S/$d/pretrain/paper-mlm-1e14-s$s $s pretrained"
    echo "scratch-s$s $S/study/pretrain/architecture $s scratch"
  done
}
run_one() {
  name=$1 model=$2 seed=$3 init=$4
  [ -f $OUT/$name/results.json ] && return 0
  rm -rf $OUT/$name
  electra finetune --model $model --task classification --train $T/rotten_tomatoes/train.tsv \
    --dev $T/rotten_tomatoes/dev.tsv --out $OUT/$name --set seed=$seed --set init=$init --set epochs=10 \
    > $OUT/$name.log 2>&1 || echo "FAILED $name"
}
export -f run_one; export OUT T
jobs_list | xargs -P 2 -L 1 bash -c 'run_one "$@"' _
date
