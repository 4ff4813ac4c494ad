#!/usr/bin/env bash
# The small-budget study, fourth check: does text from the task's own domain let a pre-trained encoder beat
# random weights on rotten_tomatoes?
# Task-adaptive pre-training (Gururangan et al., ACL 2020): continue the small-budget study's 1e14 checkpoints
# for 1e13 FLOPs on rotten_tomatoes' training sentences (labels dropped), then run the study's probe.
# Criteria, written before the runs: experiments/results/in_domain_text/criteria.txt.
#
#   experiments/in_domain_text.sh SB_OUT [OUT]
#
# SB_OUT is small_budget_study_more_seeds.sh's OUT (tok/, study/ with seed 1, study14/ with seeds 2-3).
# Arms, seeds 1-3: recipe+tapt (small_budget:electra 1e14, then 1e13 of it on the text), mlm+tapt (paper:mlm at
# lr 1e-3, likewise) and tapt-only (random weights, then 1e13 of small_budget:electra on the text).
# Two runs at a time with one thread each; finished runs are kept on rerun.
set -uo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
S=$1; OUT=${2:-$S/in_domain}; T=${SHARED:-../shared/data}/tasks
mkdir -p "$OUT"
if [ ! -f "$OUT/data/manifest.json" ]; then
  # 20 training sentences per document, in file order; the header and the labels dropped. (`data build` reads the
  # TSV itself, but as a document a row, and examples never span documents: each ~25-token sentence would fill
  # a 128-token example on its own.)
  python - "$T/rotten_tomatoes/train.tsv" "$OUT/rt_train_text.txt" <<'PY'
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    rows = [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for i, s in enumerate(rows):
        f.write(s.strip() + "\n" + ("\n" if i % 20 == 19 else ""))
PY
  electra data build --quiet --input "$OUT/rt_train_text.txt" --tokenizer "$S/tok" --out "$OUT/data" || exit 1
fi
checkpoint() {  # the study's 1e14 run of arm $1 (small_budget-electra, paper-mlm), seed $2
  if [ "$2" = 1 ]; then echo "$S/study/pretrain/$1-1e14-s1"; else echo "$S/study14/pretrain/$1-1e14-s$2"; fi
}
jobs_list() {
  for s in 1 2 3; do
    echo "recipe+tapt $s small_budget-electra --recipe small_budget"
    echo "mlm+tapt $s paper-mlm --recipe paper --set train.objective=mlm --set train.learning_rate=1e-3"
    echo "tapt-only $s none --recipe small_budget"
  done
}
run_one() {
  arm=$1 seed=$2 source=$3; shift 3
  name=$arm-s$seed run=$OUT/pretrain/$arm-s$seed ft=$OUT/finetune/$arm-s$seed
  [ -f "$ft/results.json" ] && return 0
  if [ ! -f "$OUT/pretrain/$name.done" ]; then
    rm -rf "$run"
    init=()
    if [ "$source" != none ]; then
      [ -d "$OUT/init/$arm-s$seed/discriminator" ] ||
        electra export --quiet "$(checkpoint "$source" "$seed")" --out "$OUT/init/$arm-s$seed" || return 1
      init=(--init "$OUT/init/$arm-s$seed")
    fi
    electra pretrain --quiet --preset tiny --data "$OUT/data" --out "$run" --flops-budget 1e13 \
      --set train.seed="$seed" "$@" "${init[@]}" > "$OUT/$name.pretrain.log" 2>&1 || { echo "FAILED $name"; return 1; }
    touch "$OUT/pretrain/$name.done"
  fi
  rm -rf "$ft"
  electra finetune --model "$run" --task classification --train "$T/rotten_tomatoes/train.tsv" \
    --dev "$T/rotten_tomatoes/dev.tsv" --out "$ft" --set seed="$seed" > "$OUT/$name.finetune.log" 2>&1 ||
    echo "FAILED $name (fine-tuning)"
}
export -f run_one checkpoint; export OUT T S
mkdir -p "$OUT/pretrain" "$OUT/finetune"
jobs_list | xargs -P 2 -L 1 bash -c 'run_one "$@"' _
