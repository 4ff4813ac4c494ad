#!/usr/bin/env bash
# ELECTRA against MLM at matched pre-training compute (issue 4, part 7; results: docs/experiments.md).
#
#   experiments/compute_matched.sh OUT [BUDGETS] [SEEDS]
#
# tiny preset, 8k WordPiece vocabulary trained on ../shared/data/corpus, 3 FLOPs budgets x 3 seeds x
# {electra, mlm}, plus from-scratch fine-tuning per seed; probes: rotten_tomatoes (all of train) and
# brown_pos on a 6,000-sentence slice of train (the first 6,000 sentences plus, for any dev tag they
# lack, the first later sentence that has it), full dev sets. 2 cells at a time, one thread each.
set -euo pipefail
OUT=$1; BUDGETS=${2:-2e12,6e12,1.8e13}; SEEDS=${3:-1,2,3}
SHARED=${SHARED:-../shared/data}
mkdir -p "$OUT"
[ -d "$OUT/tok" ] || electra tokenizer train --input "$SHARED/corpus" --vocab-size 8000 --out "$OUT/tok"
[ -d "$OUT/data" ] || electra data build --input "$SHARED/corpus" --tokenizer "$OUT/tok" --max-seq-length 128 \
  --out "$OUT/data"
POS=$OUT/brown_pos_train6k.conll
[ -f "$POS" ] || python3 - "$SHARED/tasks/brown_pos" "$POS" <<'PY'
import sys
src, dst = sys.argv[1], sys.argv[2]
def sentences(path):
    out, cur = [], []
    for line in open(path, encoding="utf-8"):
        if line.strip():
            cur.append(line)
        elif cur:
            out.append(cur); cur = []
    return out + [cur] if cur else out
tag = lambda line: line.rstrip("\n").split("\t")[-1]
train, dev = sentences(f"{src}/train.conll"), sentences(f"{src}/dev.conll")
dev_tags = {tag(l) for s in dev for l in s}
chosen = train[:6000]
have = {tag(l) for s in chosen for l in s}
for s in train[6000:]:
    if ({tag(l) for l in s} - have) & dev_tags:
        chosen.append(s); have |= {tag(l) for l in s}
with open(dst, "w", encoding="utf-8") as f:
    for s in chosen:
        f.writelines(s); f.write("\n")
print(f"{dst}: {len(chosen)} sentences")
PY
T=$SHARED/tasks
electra study --data "$OUT/data" --out "$OUT/study" --preset tiny --objectives electra,mlm --budgets "$BUDGETS" \
  --seeds "$SEEDS" --baseline --jobs 2 --set train.learning_rate=1e-3 \
  --probe "rotten_tomatoes=classification:$T/rotten_tomatoes/train.tsv:$T/rotten_tomatoes/dev.tsv" \
  --probe "brown_pos6k=tagging:$POS:$T/brown_pos/dev.conll"
