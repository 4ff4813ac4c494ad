"""One optimiser step of pre-training: the learning rate, the phase, the batch masked on the device, and
``train_step``, which the loop (pretrain.py) and the benchmarks (benchmarks/bench_pretrain.py,
profile_step.py) all run."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from electra.config import TrainConfig
from electra.pretraining.algorithms import init_discriminator_from_generator, phase_at
from electra.pretraining.masking import BERT_MASK_TOKEN_PROB, BERT_RANDOM_TOKEN_PROB, MaskedBatch, Selector, mask_batch
from electra.pretraining.objective import ElectraPretrainer
from electra.pretraining.stats import STAT_NAMES
from electra.runtime.distributed import Dist, all_reduce_sum, no_gradient_sync


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps`` times linear decay to 0 at ``max_steps`` (Google's ELECTRA).

    ``step`` is the 0-based index of the update about to be made.
    """
    warmup = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    decay = max(0.0, 1.0 - step / cfg.max_steps)
    return cfg.learning_rate * warmup * decay


def masked_on_device(batch: dict[str, torch.Tensor], special_ids: dict[str, int], t: TrainConfig,
                     device: torch.device, select: Selector | None = None, vocab_size: int = 0,
                     noise_cdf: torch.Tensor | None = None) -> MaskedBatch:
    """Move a loader batch to the device and mask it there; whether it has padding is read on the host.

    ``select``: whole-word or span selection (``build_selector``). ``train.corruption``: BERT's (80% [MASK],
    10% a random one of ``vocab_size`` tokens, 10% kept; the default for the MLM objective) or ELECTRA's.
    The hybrid objective: ``mask_token_prob`` [MASK], the rest drawn from ``noise_cdf`` (``noise_for``).
    """
    has_padding = not bool(batch["attention_mask"].all())  # CPU tensor: free
    b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    bert = t.uses_bert_corruption()
    if t.objective == "hybrid":
        mask_token_prob, random_token_prob = t.mask_token_prob, 1.0 - t.mask_token_prob
    else:
        mask_token_prob = BERT_MASK_TOKEN_PROB if bert else t.mask_token_prob
        random_token_prob = BERT_RANDOM_TOKEN_PROB if bert else 0.0
    return mask_batch(b["input_ids"], b["attention_mask"], b["token_type_ids"], b["keys"], special_ids,
                      t.mask_prob, mask_token_prob, t.seed, has_padding=has_padding, select=select,
                      random_token_prob=random_token_prob, vocab_size=vocab_size,
                      position_ids=b.get("position_ids"), noise_cdf=noise_cdf, word_starts=b.get("word_starts"))


def enter_phase(model: ElectraPretrainer, step: int, t: TrainConfig) -> dict[str, Any] | None:
    """Put the model in the phase of step ``step`` (algorithms.phase_at). At two-stage's switch (the first
    discriminator step, n) the discriminator is initialised from the generator; returns the log record then.

    The record carries step n + 1, the step it precedes, so a resume from the checkpoint of step n (taken
    before the copy) drops it and logs it again when the copy is redone.
    """
    model.phase = phase_at(step, t)
    if t.algorithm != "two_stage" or step != t.two_stage_switch_step():
        return None
    copied, total = init_discriminator_from_generator(model)
    return {"event": "two_stage_switch", "step": step + 1, "generator_steps": step,
            "copied_tensors": copied, "discriminator_encoder_tensors": total}


def dropout_seed(seed: int, step: int, rank: int) -> int:
    """The seed of this step's dropout masks on this rank. Reseeding every step makes the masks a function of
    (seed, step, rank): a resumed run draws those of the uninterrupted one without saved RNG state, and
    under torchrun each rank draws its own (one shared seed gave every rank the same masks)."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0] >> 1)  # < 2**63


def train_step(model: ElectraPretrainer, step_fn: Any, optimizer: torch.optim.AdamW, params: list[torch.Tensor],
               mb: MaskedBatch, t: TrainConfig, d: Dist, accumulation: int, autocast: Any, device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One update on this rank's share ``mb`` of the global batch, in ``accumulation`` micro-batches.

    Returns, all on the device (no host sync on CUDA): the stats summed over the micro-batches
    ((len(STAT_NAMES),), this rank's), the gradient norm before clipping, whether it was non-finite (the
    update is then skipped) and the global batch's token count.
    """
    # Global counts normalise every micro-batch's loss (see ElectraPretrainer.forward); with several
    # processes, those of the whole global batch (summed over ranks), so the ranks' gradients sum to it.
    num_selected, num_tokens = mb.valid.sum(), mb.attention_mask.sum()
    if d.enabled:
        counts = all_reduce_sum(torch.stack([num_selected, num_tokens]), d)
        num_selected, num_tokens = counts[0], counts[1]
    step_stats = torch.zeros(len(STAT_NAMES), device=device)
    micros = mb.split(accumulation)
    for i, micro in enumerate(micros):
        # Gradients are reduced over ranks after the last micro-batch only.
        with no_gradient_sync(step_fn, last=i == len(micros) - 1) if d.enabled else contextlib.nullcontext():
            with autocast():
                loss, stats = step_fn(micro, t.seed, t.disc_weight, num_selected, num_tokens)
            loss.backward()
        step_stats += stats
    grad_norm = torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
    if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor, the norm over all shards
        grad_norm = grad_norm.full_tensor()
    bad = ~torch.isfinite(grad_norm)  # a non-finite loss makes the gradient norm non-finite too
    if device.type == "cuda" and getattr(optimizer, "defaults", {}).get("fused"):
        optimizer.found_inf = bad.float()  # the fused kernel skips the whole update when set
        optimizer.step()
    elif not bool(bad):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if t.algorithm == "adversarial":  # the REINFORCE baseline: the global batch's mean (a copy: stats stay local)
        model.end_step(all_reduce_sum(step_stats.clone(), d))
    return step_stats, grad_norm, bad, num_tokens
