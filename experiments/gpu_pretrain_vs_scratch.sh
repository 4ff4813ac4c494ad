#!/usr/bin/env bash
# Does pre-training beat random weights on both tasks (docs/finetune.md), given a GPU? Pre-train with
# `electra pretrain` far longer than 2 CPU cores allow, then fine-tune pre-trained vs from scratch (experiments/finetune_vs_scratch.sh) in the same call.
#
#   experiments/gpu_pretrain_vs_scratch.sh WORK [STEPS] [PRESET]
#
# WORK: a new folder for the tokenizer, data, run and fine-tunings (git ignores runs/: use runs/gpu).
# STEPS (default 5000) of PRESET (default small, its batch of 128 x 128 tokens), the MLM objective
# with the doubling sequence-length warm-up (the recipe that helped POS on CPU, docs/finetune.md).
# OBJECTIVE, LR and LAYER_DECAY (environment) change the recipe. When $OUT is set (the device
# tool), the results, metrics and logs are copied there. The whole thing is resumable: rerun the same
# command after a timeout and finished stages are skipped, the pre-training resumes.
#
# On the lent GPU (the device tool) only the checkout travels, not ../shared: copy ../shared/data into the
# checkout's shared/data first and pass CORPUS=shared/data/corpus TASKS=shared/data/tasks. Without an
# installed `electra` command the script runs the checkout's code with python3 -m electra. Expect about
# 60 ms a step for `small` at 128 x 128 (H100, 2026-11-22, eager), so 5,000 steps are ~5 minutes.
set -euo pipefail
WORK=$1; STEPS=${2:-5000}; PRESET=${3:-small}
OBJECTIVE=${OBJECTIVE:-mlm}; LR=${LR:-5e-4}; export LAYER_DECAY=${LAYER_DECAY:-1.0}
CORPUS=${CORPUS:-../shared/data/corpus}
HERE=$(cd "$(dirname "$0")" && pwd)
if ! command -v electra > /dev/null; then  # not installed (the device machine): the checkout's code
  export PYTHONPATH="$(dirname "$HERE")${PYTHONPATH:+:$PYTHONPATH}"
  electra() { python3 -m electra "$@"; }
  export -f electra                          # finetune_vs_scratch.sh calls it too
fi
mkdir -p "$WORK"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

[ -f "$WORK/tok/tokenizer.json" ] || electra tokenizer train --input "$CORPUS" --vocab-size 8000 --out "$WORK/tok"
[ -f "$WORK/data/manifest.json" ] || electra data build --input "$CORPUS" --tokenizer "$WORK/tok" \
    --max-seq-length 128 --out "$WORK/data" --quiet
WARMUP=$(( STEPS / 10 < 1600 ? STEPS / 10 : 1600 ))   # steps of short windows (8, 16, 32, 64 tokens)
RESUME=(); [ -f "$WORK/pt/config.json" ] && RESUME=(--resume)
if [ ! -d "$WORK/pt/checkpoints/step-$(printf %08d "$STEPS")" ]; then   # not finished yet
  electra pretrain --preset "$PRESET" --data "$WORK/data" --out "$WORK/pt" --max-steps "$STEPS" --quiet "${RESUME[@]}" \
      --set train.objective="$OBJECTIVE" --set train.learning_rate="$LR" --set train.warmup_steps=$(( STEPS / 20 + 1 )) \
      --set train.short_seq_length=8 --set train.short_seq_steps="$WARMUP" --set train.short_seq_schedule=doubling \
      --set train.save_every=1000 --set train.eval_every=1000
fi
[ -f "$WORK/ft/brown_pos-scratch/results.json" ] || "$HERE/finetune_vs_scratch.sh" "$WORK/pt" "$WORK/ft" 1 | tee "$WORK/table.md"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/run"
  cp "$WORK/pt/config.json" "$WORK/pt/metrics.jsonl" "$OUT/run/"
  cp "$WORK"/table.md "$OUT/" 2>/dev/null || true
  for d in "$WORK"/ft/*/; do n=$(basename "$d"); mkdir -p "$OUT/ft/$n"; cp "$d/results.json" "$OUT/ft/$n/" 2>/dev/null || true; done
  cp "$WORK"/ft/*.log "$OUT/ft/" 2>/dev/null || true
fi
