"""Collect experiments/in_domain_text.sh's runs into one CSV and a per-arm summary.

    python experiments/summarise_in_domain_text.py OUT [--csv experiments/results/in_domain_text/results.csv]

OUT is the script's output folder (OUT/pretrain/ARM-sSEED, OUT/finetune/ARM-sSEED). One row per run: the arm, the
seed, the continued pre-training's steps and FLOPs, its final held-out yardstick (on the task text's held-out
slice, so not comparable with the study's), and the rotten_tomatoes dev accuracy of the fine-tuned model (%).
"""

import argparse
import csv
import sys
from pathlib import Path

from electra.errors import UserError
from electra.runtime.files import atomic_file, make_folder, read_json_object
from electra.runtime.metrics_log import read_metrics


def run_row(out: Path, name: str) -> dict:
    arm, _, seed = name.rpartition("-s")
    records = read_metrics(out / "pretrain" / name / "metrics.jsonl")  # a torn last line is skipped
    train = [r for r in records if "flops" in r]
    evals = [r for r in records if r.get("event") == "eval" and "eval_unigram_auc" in r]
    result = read_json_object(out / "finetune" / name / "results.json")
    return {"arm": arm, "seed": int(seed), "steps": train[-1]["step"], "flops": train[-1]["flops"],
            "eval_unigram_auc": round(evals[-1]["eval_unigram_auc"], 4) if evals else "",
            "accuracy": round(100 * result["seeds"][0]["accuracy"], 2), "collapsed": bool(result["collapsed_seeds"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--csv", type=Path)
    a = p.parse_args()
    names = sorted(d.name for d in (a.out / "finetune").iterdir() if (d / "results.json").is_file())
    rows = [run_row(a.out, n) for n in names]
    if a.csv:
        make_folder(a.csv.parent)
        with atomic_file(a.csv, text=True) as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    for arm in sorted({r["arm"] for r in rows}):
        mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["seed"])
        acc = [r["accuracy"] for r in mine]
        print(f"{arm:12s} mean {sum(acc) / len(acc):.2f}  range {min(acc):.2f}-{max(acc):.2f} "
              f"({max(acc) - min(acc):.2f})  seeds {', '.join(f'{x:.2f}' for x in acc)}  "
              f"auc {', '.join(str(r['eval_unigram_auc']) for r in mine)}")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:  # a file that cannot be read or written: one line, as the CLI does
        sys.exit(f"error: {e}")
