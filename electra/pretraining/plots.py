"""`electra plot`: a run's training and held-out curves (metrics.jsonl) as a PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from electra.errors import UserError
from electra.runtime.files import atomic_file, check_output_file, refuse_input_as_output
from electra.runtime.metrics_log import read_metrics

# Held-out lines drawn in a panel besides its own key's: the yardstick in the discriminator's AUC panel.
EXTRA_EVAL_LINES = {"disc_auc": (("eval_unigram_auc", "yardstick: unigram replacements"),
                                 ("eval_uniform_auc", "yardstick: uniform replacements"))}


def plot_panels(last: dict[str, Any]) -> list[tuple[str, str]]:
    """The (metric key, title) panels of ``electra plot`` for a run whose newest training record is ``last``:
    six, plus the discriminator's AUC and margin when the run logs them (replaced-token detection)."""
    panels = [("gen_loss", "generator MLM loss"), ("disc_loss", "discriminator loss"),
              ("gen_acc", "generator MLM accuracy"), ("disc_acc", "discriminator accuracy"),
              ("disc_recall", "replaced-token recall"), ("lr", "learning rate")]
    if "mlm_loss" in last:  # the MLM objectives: the discriminator-sized network is a masked LM
        panels = [("mlm_loss", "masked-LM loss"), ("gen_loss", "generator MLM loss"), ("mlm_acc", "masked-LM accuracy"),
                  ("gen_acc", "generator MLM accuracy"), ("grad_norm", "gradient norm"), ("lr", "learning rate")]
    if "corrupted_loss" in last:  # says more than the accuracy that includes the copied tokens
        panels = [("corrupted_loss", "masked-LM loss at corrupted positions") if key == "gen_acc" else (key, title)
                  for key, title in panels]
        if "mlm_loss" in last and last["gen_loss"] == 0:  # mlm: no generator (its keys are logged as 0)
            panels = [("corrupted_acc", "masked-LM accuracy at corrupted positions") if key == "gen_loss"
                      else (key, title) for key, title in panels]
    if "disc_auc" in last:  # the signals that move before accuracy and recall do (stats.py: binary_auc, label_entropy)
        panels[3:3] = [("disc_auc", "discriminator AUC"), ("disc_margin", "discriminator: label entropy - loss")]
    return panels


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the loss and accuracy curves of a run's metrics.jsonl into a PNG (or the format ``out``'s suffix
    names: .pdf, .svg, ...), written atomically. A torn last line (a run killed while logging) or another
    unreadable line is skipped with a warning (``read_metrics``): the plot shows the good records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir}: no metrics.jsonl; is it the --out folder of `electra pretrain`?")
    out = check_output_file(Path(out) if out else run_dir / "curves.png")
    refuse_input_as_output(out, [path])
    fmt = out.suffix.lstrip(".").lower() or "png"
    if fmt not in FigureCanvasAgg.get_supported_filetypes():  # (the Agg canvas every figure here has)
        raise UserError(f"{out}: cannot draw a .{fmt} file; give --out a name ending in .png, .pdf or .svg")
    train, evals = [], []
    for r in read_metrics(path):
        if not isinstance(r.get("step"), (int, float)):
            continue  # not a record of a step (damaged): nothing to draw it at
        if r.get("event") == "eval":
            evals.append(r)
        elif "gen_loss" in r:
            train.append(r)
    if not train:
        raise UserError(f"{path}: no training records yet")
    panels = plot_panels(train[-1])
    columns = math.ceil(len(panels) / 2)
    fig, axes = plt.subplots(2, columns, figsize=(14 * columns / 3, 7))
    for ax, (key, title) in zip(axes.flat, panels):
        ax.plot([r["step"] for r in train], [r.get(key, math.nan) for r in train], label="train", lw=1)
        lines = [(f"eval_{key}", "held-out"), *EXTRA_EVAL_LINES.get(key, ())]
        drawn = False
        for eval_key, label in lines:
            points = [(r["step"], r[eval_key]) for r in evals if eval_key in r]
            if points:
                ax.plot(*zip(*points), "o-", label=label, ms=3)
                drawn = True
        if drawn:
            ax.legend(fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    try:
        with atomic_file(out) as f:
            fig.savefig(f, dpi=100, format=fmt)
    finally:
        plt.close(fig)
    return out
