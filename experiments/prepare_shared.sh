#!/usr/bin/env bash
# The shared-data inputs of the compute-matched studies (compute_matched.sh, small_budget_study.sh):
#
#   experiments/prepare_shared.sh OUT
#
# an 8k WordPiece vocabulary trained on ../shared/data/corpus (OUT/tok), the corpus packed into examples of
# 128 (OUT/data), and OUT/brown_pos_train6k.conll: the first 6,000 brown_pos training sentences plus, for any
# dev tag they lack, the first later sentence that has it. Each step is skipped when its output exists.
set -euo pipefail
OUT=$1
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
