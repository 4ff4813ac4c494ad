#!/usr/bin/env bash
# Does pre-training with `electra pretrain` help fine-tuning? The same architecture, tokenizer and
# fine-tuning budget, from a pre-trained discriminator and from random weights, 3 seeds each, on
# rotten_tomatoes (sentiment) and brown_pos (POS tagging). Results: docs/finetune.md.
#
#   experiments/finetune_vs_scratch.sh RUN OUT [POS_EPOCHS]
#
# RUN: an `electra pretrain` run folder (its newest checkpoint is used); OUT: a new folder.
# LAYER_DECAY (environment, default 0.8, the recipe's): layer-wise learning-rate decay for both inits.
# Each fine-tuning run uses one thread; the two inits run side by side (2 cores).
set -euo pipefail
RUN=$1; OUT=$2; POS_EPOCHS=${3:-3}
LAYER_DECAY=${LAYER_DECAY:-0.8}
TASKS=${TASKS:-../shared/data/tasks}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1

for init in pretrained scratch; do
  electra finetune --model "$RUN" --task classification --seeds 3 --set init=$init \
    --set layerwise_lr_decay="$LAYER_DECAY" --quiet \
    --train "$TASKS/rotten_tomatoes/train.tsv" --dev "$TASKS/rotten_tomatoes/dev.tsv" \
    --out "$OUT/rotten_tomatoes-$init" > "$OUT/rotten_tomatoes-$init.log" 2>&1 &
done
wait
for init in pretrained scratch; do
  electra finetune --model "$RUN" --task tagging --seeds 3 --set init=$init --set epochs="$POS_EPOCHS" \
    --set layerwise_lr_decay="$LAYER_DECAY" --quiet \
    --train "$TASKS/brown_pos/train.conll" --dev "$TASKS/brown_pos/dev.conll" \
    --out "$OUT/brown_pos-$init" > "$OUT/brown_pos-$init.log" 2>&1 &
done
wait
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| task | metric | init | seeds | mean | median | std |")
print("|---|---|---|---|---|---|---|")
for task in ("rotten_tomatoes", "brown_pos"):
    for init in ("pretrained", "scratch"):
        r = json.loads((out / f"{task}-{init}" / "results.json").read_text())
        m = r["primary_metric"]
        s = r["summary"][m]
        vals = ", ".join(f"{x[m] * 100:.2f}" for x in r["seeds"])
        print(f"| {task} | {m} | {init} | {vals} | {s['mean'] * 100:.2f} | {s['median'] * 100:.2f} | {s['std'] * 100:.2f} |")
PY
