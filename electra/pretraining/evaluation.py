"""Held-out evaluation during pre-training: the objective's losses and accuracies on a fixed masking of the
held-out slice, and the yardstick's AUCs (yardstick.py); ``run_at_checkpoint`` evaluates a checkpoint again."""

from __future__ import annotations

from pathlib import Path

import torch

from electra.config import TrainConfig
from electra.data.loader import PretrainingData, eval_batches, token_distributions
from electra.pretraining.batches import Masking
from electra.pretraining.setup import Run, build_model, build_optimizer, build_selector, noise_for, tokenizer_for
from electra.pretraining.stats import STAT_NAMES, summarise_stats
from electra.pretraining.step import phase_at
from electra.pretraining.yardstick import yardstick_aucs
from electra.runtime.checkpoint import latest_checkpoint, load_checkpoint, load_run_config
from electra.runtime.device import autocast_for
from electra.runtime.files import read_json_object


@torch.no_grad()
def evaluate(run: Run) -> dict[str, float]:
    """Losses and accuracies on the held-out slice, in the run's current phase, with a fixed masking so evaluations
    are comparable; with the data's token distributions (``run.distributions``) also the discriminator's
    ``eval_unigram_auc`` and ``eval_uniform_auc``, the same for every run on the same data."""
    model, data, device, t = run.model, run.data, run.device, run.cfg.train
    model.eval()
    batch_size = t.micro_batch_size or t.batch_size
    baseline = None if run.reward_baseline is None else run.reward_baseline.value()
    total = torch.zeros(len(STAT_NAMES), device=device)
    for batch in eval_batches(data, t.eval_examples, batch_size):
        mb = run.masking(batch)
        with run.autocast():
            _, stats = model(mb, t.seed, t.disc_weight, mb.valid.sum(), mb.attention_mask.sum(), run.phase, baseline)
        total += stats
    record = {f"eval_{k}": v for k, v in summarise_stats(total).items()}
    if run.distributions is not None:
        record.update(yardstick_aucs(model.discriminator, data, run.distributions, device, batch_size, run.autocast))
    model.train()
    return record


def held_out_loss(record: dict[str, float], t: TrainConfig) -> float:
    """The training objective on the held-out slice (absent parts are 0): MLM terms + λ · discriminator."""
    return (record.get("eval_gen_loss", 0.0) + record.get("eval_mlm_loss", 0.0)
            + t.disc_weight * record.get("eval_disc_loss", 0.0))


def run_at_checkpoint(run_dir: Path, checkpoint: Path | None = None, data_dir: Path | None = None,
                      device: torch.device | None = None) -> Run:
    """A pre-training run at one of its checkpoints (default the newest) as its loop held it there, for
    ``evaluate``: the weights, the phase of the last step made and the adversarial baseline; the data folder it
    was trained on unless ``data_dir``; fp32."""
    run_dir, device = Path(run_dir), device or torch.device("cpu")
    cfg = load_run_config(run_dir)
    record = read_json_object(run_dir / "run.json", "a run's record (a JSON object)")
    data = PretrainingData(data_dir or record["data"])
    model = build_model(cfg).to(device)
    state = load_checkpoint(checkpoint or latest_checkpoint(run_dir), model, None, device)
    select, _ = build_selector(cfg, tokenizer_for(data, run_dir), device)
    distributions = token_distributions(data) if cfg.train.trains_detector() else None
    masking = Masking(data.special_ids, cfg.train, cfg.model.vocab_size, device, select,
                      noise_for(cfg, distributions, device))
    return Run(cfg=cfg, model=model, step_fn=model, optimizer=build_optimizer(model, cfg.train, device), device=device,
               autocast=autocast_for(device, "fp32"), state=state, phase=phase_at(max(0, state["step"] - 1), cfg.train),
               out=run_dir, data=data, masking=masking, distributions=distributions)
