"""Evaluate a pre-training checkpoint on its run's held-out slice with today's statistics.

Runs logged before a statistic existed (e.g. ``corrupted_loss``, the masked LM at the positions it cannot
copy) can be read again from their checkpoints; the masking is the run's fixed held-out masking.

    python experiments/held_out_eval.py RUN_DIR [--checkpoint RUN_DIR/checkpoints/step-N] [--threads 1]
"""

import argparse
import json
from pathlib import Path

import torch

from electra.pretraining.evaluation import evaluate, run_at_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the newest")
    p.add_argument("--data", type=Path, default=None, help="default: the data folder the run was trained on")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    run = run_at_checkpoint(a.run, a.checkpoint, a.data)
    stats = evaluate(run)
    print(json.dumps({"checkpoint": str(a.checkpoint or "newest"), "step": run.step, **stats}, indent=1))


if __name__ == "__main__":
    main()
