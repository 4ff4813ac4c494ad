"""Held-out evaluation during pre-training: the objective's losses and accuracies on a fixed masking of the
held-out slice, and the yardstick's AUCs (yardstick.py)."""

from __future__ import annotations

import torch

from electra.config import TrainConfig
from electra.data.loader import eval_batches
from electra.pretraining.batches import masked_on_device
from electra.pretraining.setup import Run
from electra.pretraining.stats import STAT_NAMES, summarise_stats
from electra.pretraining.yardstick import yardstick_aucs


@torch.no_grad()
def evaluate(run: Run) -> dict[str, float]:
    """Losses and accuracies on the held-out slice, in the run's current phase, with a fixed masking so evaluations
    are comparable; with the data's token distributions (``run.distributions``) also the discriminator's
    ``eval_unigram_auc`` and ``eval_uniform_auc``, the same for every run on the same data."""
    model, data, cfg, device, t = run.model, run.data, run.cfg, run.device, run.cfg.train
    model.eval()
    batch_size = t.micro_batch_size or t.batch_size
    baseline = None if run.reward_baseline is None else run.reward_baseline.value()
    total = torch.zeros(len(STAT_NAMES), device=device)
    for batch in eval_batches(data, t.eval_examples, batch_size):
        mb = masked_on_device(batch, data.special_ids, t, device, run.select, cfg.model.vocab_size, run.noise_cdf)
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
