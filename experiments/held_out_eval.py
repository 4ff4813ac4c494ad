"""Evaluate a pre-training checkpoint on its run's held-out slice with today's statistics.

Runs logged before a statistic existed (e.g. ``corrupted_loss``, the masked LM at the positions it cannot
copy) can be read again from their checkpoints; the masking is the run's fixed held-out masking.

    python experiments/held_out_eval.py RUN_DIR [--checkpoint RUN_DIR/checkpoints/step-N] [--threads 1]
"""

import argparse
import json
from pathlib import Path

import torch

from electra.data.loader import PretrainingData, token_distributions
from electra.pretraining.evaluation import evaluate
from electra.pretraining.setup import Run, build_model, build_optimizer, build_selector, noise_for, tokenizer_for
from electra.pretraining.step import phase_at
from electra.runtime.checkpoint import latest_checkpoint, load_checkpoint, load_run_config
from electra.runtime.device import autocast_for


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the newest")
    p.add_argument("--data", type=Path, default=None, help="default: the data folder the run was trained on")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = load_run_config(a.run)
    run_info = json.loads((a.run / "run.json").read_text())
    data = PretrainingData(a.data or run_info["data"])
    ckpt = a.checkpoint or latest_checkpoint(a.run)
    device = torch.device("cpu")
    model = build_model(cfg)
    state = load_checkpoint(ckpt, model, None, device)
    select, _ = build_selector(cfg, tokenizer_for(data, a.run), device)
    distributions = token_distributions(data) if cfg.train.trains_detector() else None
    # The run as its loop evaluated it at this checkpoint: the phase of the last step made, its reward baseline.
    run = Run(cfg=cfg, model=model, step_fn=model, optimizer=build_optimizer(model, cfg.train, device), device=device,
              autocast=autocast_for(device, "fp32"), state=state, phase=phase_at(max(0, state["step"] - 1), cfg.train),
              data=data, select=select, noise_cdf=noise_for(cfg, distributions, device), distributions=distributions)
    stats = evaluate(run)
    print(json.dumps({"checkpoint": str(ckpt), "step": state["step"], **stats}, indent=1))


if __name__ == "__main__":
    main()
