"""Long lines (docs/reliability.md, rule 5): time and peak memory of `electra data build` on one line of N tokens,
against the same words with a newline every 20 of them, for growing N. Each build runs in a fresh process, which reports
its wall time and its peak resident memory during the build (Linux's VmHWM, reset after the imports through
/proc/self/clear_refs; it includes the tokenizer's Rust allocations, which tracemalloc cannot see), and how much
the build added to the resident memory it started with.

    PYTHONPATH=. python benchmarks/bench_long_lines.py
    PYTHONPATH=. python benchmarks/bench_long_lines.py --old /tmp/old   # also an earlier tree, for comparison

``--old DIR``: a source tree of another commit (``git archive 2fcc3d4 electra | tar -x -C /tmp/old``), run on the
sizes up to ``--old-max-tokens`` (the old code is quadratic in a line's length). The vocabulary is BERT's uncased
one from ../shared/data when present (every word below is one token of it), else one trained here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BERT_VOCAB = ROOT.parent / "shared" / "data" / "vocab" / "bert-base-uncased-vocab.txt"
WORDS = ("the whale ship sea captain ahab white water boat men deck night old long great voyage ocean wind sail "
         "island harbor storm morning island crew").split()

CHILD = r"""
import json, sys, time
import electra
from electra.data.corpus import build_dataset


def status(key):  # kB, from /proc/self/status (Linux)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])


# The peak so far (imports, and what a fork inherited: ru_maxrss survives exec) is not the build's: reset it.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status("VmRSS")
start = time.perf_counter()
m = build_dataset([sys.argv[1]], sys.argv[2], sys.argv[3], max_seq_length=128, valid_fraction=0, progress=False)
seconds = time.perf_counter() - start
peak = status("VmHWM")
print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "growth_mb": (peak - base) / 1024,
                  "examples": m["splits"]["train"]["num_examples"], "lines": m["source"]["num_lines"],
                  "code": electra.__file__}))
"""


def corpus_text(tokens: int, newlines: bool) -> str:
    rng = random.Random(tokens)
    words = [rng.choice(WORDS) for _ in range(tokens)]
    if not newlines:
        return " ".join(words) + "\n"
    return "\n".join(" ".join(words[i:i + 20]) for i in range(0, tokens, 20)) + "\n"


def vocabulary(tmp: Path) -> Path:
    if BERT_VOCAB.is_file():
        return BERT_VOCAB
    sys.path.insert(0, str(ROOT))
    from electra.data.tokenizer import train_tokenizer

    (tmp / "vocab.txt").write_text(corpus_text(20_000, True))
    train_tokenizer([tmp / "vocab.txt"], 200, tmp / "tok", min_frequency=1, progress=False)
    return tmp / "tok"


def run(source: Path, corpus: Path, vocab: Path, out: Path, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(source), "TOKENIZERS_PARALLELISM": "true"}
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(vocab), str(out)], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=out.parent)  # not ROOT: -c
    # puts the working folder first on sys.path, before PYTHONPATH
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:80]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(result["code"]).resolve().is_relative_to(source), f"ran {result['code']}, not the code in {source}"
    return result


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    return f"Python {platform.python_version()}, numpy {v('numpy')}, tokenizers {v('tokenizers')}, torch {v('torch')}"


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="250000,500000,1000000,2000000", help="tokens on the line, comma-separated")
    ap.add_argument("--old", type=Path, help="a source tree of an earlier commit, to compare")
    ap.add_argument("--old-max-tokens", type=int, default=1_000_000)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds for one build")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {cpu()}, {cores} usable "
          f"cores; {versions()}; load average {os.getloadavg()[0]:.2f} at start")
    trees = [("this tree", ROOT)] + ([("old", args.old.resolve())] if args.old else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vocab = vocabulary(tmp)
        print(f"vocabulary: {vocab}; max_seq_length 128; one process per build\n")
        print("| code | layout | tokens | file MB | seconds | tokens/s | peak RSS MB | RSS growth MB | examples |")
        print("|---|---|---|---|---|---|---|---|---|")
        for tokens in sizes:
            for layout in ("one line", "20 words a line"):
                corpus = tmp / f"c{tokens}-{layout[0]}.txt"
                corpus.write_text(corpus_text(tokens, layout != "one line"))
                mb = corpus.stat().st_size / 1e6
                for name, source in trees:
                    if name == "old" and tokens > args.old_max_tokens:
                        continue
                    out = tmp / f"out-{name[0]}-{tokens}-{layout[0]}"
                    r = run(source, corpus, vocab, out, args.timeout)
                    if "error" in r:
                        print(f"| {name} | {layout} | {tokens:,} | {mb:.1f} | {r['error']} | | | | |", flush=True)
                        continue
                    rows.append((name, layout, tokens, r))
                    print(f"| {name} | {layout} | {tokens:,} | {mb:.1f} | {r['seconds']:.2f} | "
                          f"{tokens / r['seconds']:,.0f} | {r['peak_mb']:.0f} | {r['growth_mb']:.0f} | "
                          f"{r['examples']:,} |", flush=True)
                corpus.unlink()
    print(f"\nload average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
