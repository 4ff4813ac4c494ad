"""The held-out yardstick (eval_unigram_auc, eval_uniform_auc) against pre-training FLOPs, for several runs.

    python experiments/yardstick_vs_flops.py --out docs/img/yardstick LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Writes OUT.csv (label, step, flops, eval_unigram_auc, eval_uniform_auc) and OUT.png. A run's FLOPs at an
evaluation are those logged by its training record of the same step (electra/pretraining/flops.py, analytic).
"""

import argparse
import csv
import sys
from pathlib import Path

from electra.errors import UserError
from electra.runtime.files import atomic_file, make_folder
from electra.runtime.metrics_log import read_metrics


def rows(label: str, run: Path) -> list[dict]:
    records = read_metrics(run / "metrics.jsonl")  # a torn last line is skipped
    flops = {r["step"]: r["flops"] for r in records if "flops" in r}
    return [{"label": label, "step": r["step"], "flops": flops[r["step"]],
             "eval_unigram_auc": r["eval_unigram_auc"], "eval_uniform_auc": r["eval_uniform_auc"]}
            for r in records if r.get("event") == "eval" and "eval_unigram_auc" in r and r["step"] in flops]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    p.add_argument("--out", type=Path, required=True, help="path without suffix")
    a = p.parse_args()
    table = [row for spec in a.runs for row in rows(*spec.split("=", 1)[:1], Path(spec.split("=", 1)[1]))]
    make_folder(a.out.parent)
    with atomic_file(a.out.with_suffix(".csv"), text=True) as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in ((axes[0], "eval_unigram_auc", "unigram replacements (only context tells)"),
                           (axes[1], "eval_uniform_auc", "uniformly random replacements")):
        for label in dict.fromkeys(r["label"] for r in table):
            mine = [r for r in table if r["label"] == label]
            ax.plot([r["flops"] for r in mine], [r[key] for r in mine], "o-", ms=3, label=label)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("pre-training FLOPs")
        ax.set_ylabel("held-out AUC")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(a.out.with_suffix(".png")) as f:
        fig.savefig(f, dpi=100, format="png")
    print(f"{a.out.with_suffix('.csv')} and {a.out.with_suffix('.png')}: {len(table)} evaluations")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:  # a file that cannot be read or written: one line, as the CLI does
        sys.exit(f"error: {e}")
