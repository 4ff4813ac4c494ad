"""The first N sentences of a CoNLL training file, plus, for any tag of the dev file that they lack, the first
later sentence that has it (fine-tuning refuses a dev tag it never saw in train).

    python experiments/conll_slice.py TRAIN DEV N OUT
"""

import sys

from electra.errors import UserError
from electra.runtime.files import atomic_file, refuse_input_as_output


def sentences(path: str) -> list[list[str]]:
    out, cur = [], []
    for line in open(path, encoding="utf-8"):
        if line.strip():
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    return out + [cur] if cur else out


def tag(line: str) -> str:
    return line.rstrip("\n").split("\t")[-1]


def main() -> None:
    train_path, dev_path, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    train, dev = sentences(train_path), sentences(dev_path)
    dev_tags = {tag(line) for s in dev for line in s}
    chosen = train[:n]
    have = {tag(line) for s in chosen for line in s}
    for s in train[n:]:
        if ({tag(line) for line in s} - have) & dev_tags:
            chosen.append(s)
            have |= {tag(line) for line in s}
    refuse_input_as_output(out, [train_path, dev_path], option="OUT")
    with atomic_file(out, text=True) as f:
        for s in chosen:
            f.writelines(s)
            f.write("\n")
    print(f"{out}: {len(chosen)} sentences")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:  # a file that cannot be read or written: one line, as the CLI does
        sys.exit(f"error: {e}")
