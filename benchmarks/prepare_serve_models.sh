#!/usr/bin/env bash
# The models benchmarks/bench_serve.py measures: a pre-trained `tiny` (the demo's recipe, 800 steps on the shared
# corpus) fine-tuned on rotten_tomatoes and on brown_pos (its first 6,000 training sentences, plus one for each
# dev tag they lack: experiments/conll_slice.py), and a `small`
# classifier (random `small` weights, fine-tuned one epoch on rotten_tomatoes: the latency target is about its size).
# Each one exported to ONNX with --int8 and scored on dev. Usage: benchmarks/prepare_serve_models.sh OUT
set -euo pipefail
OUT=${1:?usage: prepare_serve_models.sh OUT}
DATA=$(cd "$(dirname "$0")/../.." && pwd)/shared/data
mkdir -p "$OUT"
[ -d "$OUT/demo/pretrain/hf" ] || electra demo --out "$OUT/demo" --corpus "$DATA/corpus/sotu.txt.gz" "$DATA/corpus/austen.txt.gz" --quiet
DISC="$OUT/demo/pretrain/hf/discriminator"
RT="$DATA/tasks/rotten_tomatoes"
[ -f "$OUT/brown_pos6k.conll" ] || python3 "$(dirname "$0")/../experiments/conll_slice.py" \
  "$DATA/tasks/brown_pos/train.conll" "$DATA/tasks/brown_pos/dev.conll" 6000 "$OUT/brown_pos6k.conll"
[ -f "$OUT/tiny-rt/results.json" ] || electra finetune --model "$DISC" --task classification --train "$RT/train.tsv" \
  --dev "$RT/dev.tsv" --out "$OUT/tiny-rt" --set epochs=10 --set layerwise_lr_decay=1.0 --quiet
[ -f "$OUT/tiny-pos/results.json" ] || electra finetune --model "$DISC" --task tagging --train "$OUT/brown_pos6k.conll" \
  --dev "$DATA/tasks/brown_pos/dev.conll" --out "$OUT/tiny-pos" --set epochs=3 --quiet
[ -d "$OUT/small-run/checkpoints" ] || electra pretrain --preset small --data "$OUT/demo/data" --out "$OUT/small-run" \
  --max-steps 1 --set train.batch_size=8 --quiet
[ -f "$OUT/small-rt/results.json" ] || electra finetune --model "$OUT/small-run" --task classification --train "$RT/train.tsv" \
  --dev "$RT/dev.tsv" --out "$OUT/small-rt" --set init=scratch --set epochs=1 --quiet
for m in tiny-rt tiny-pos small-rt; do
  dev="$RT/dev.tsv"; [ "$m" = tiny-pos ] && dev="$DATA/tasks/brown_pos/dev.conll"
  [ -f "$OUT/$m-onnx/onnx.json" ] || electra export-onnx "$OUT/$m" --out "$OUT/$m-onnx" --int8 --dev "$dev"
done
