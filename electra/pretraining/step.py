"""One optimiser step of pre-training, ``train_step(run, mb)``, and everything a step's index decides.

The step: its learning rate, phase and dropout seed, the masked batch in micro-batches through the objective
(objective.py), backward, clipping, the non-finite check and AdamW. The loop (pretrain.py) and the benchmarks
(benchmarks/bench_pretrain.py, profile_step.py) all run it.

The schedules (below the step): the learning rate, the phase (the training algorithm's stage) and the dropout
seed are each a function of (step, config) alone, so a resumed run recomputes exactly what the uninterrupted one
had, with no saved state.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, NamedTuple

import numpy as np
import torch

from electra.config import TrainConfig
from electra.pretraining.algorithms import init_discriminator_from_generator
from electra.pretraining.batches import MaskedBatch
from electra.pretraining.setup import Run
from electra.pretraining.stats import STAT_NAMES
from electra.runtime.distributed import all_reduce_sum, no_gradient_sync


class StepResult(NamedTuple):
    """What one step leaves, all tensors on the device (no host sync on CUDA)."""

    stats: torch.Tensor       # (len(STAT_NAMES),) this rank's sums over its micro-batches
    grad_norm: torch.Tensor   # the gradient norm before clipping
    bad: torch.Tensor         # True when it was not finite (the update was skipped)
    num_tokens: torch.Tensor  # the global batch's real tokens
    lr: float                 # the learning rate the step used
    switch: dict[str, Any] | None  # the metrics record of two-stage training's switch, at that step


def train_step(run: Run, mb: MaskedBatch) -> StepResult:
    """Optimiser step ``run.step`` on this rank's share ``mb`` of the global batch, in ``run.accumulation``
    micro-batches. Sets the step's learning rate and phase and reseeds dropout first; leaves ``run.state``
    to the caller (the loop advances it)."""
    t, d, step = run.cfg.train, run.d, run.step
    lr = step_learning_rate(step, t)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    switch = enter_phase(run, step)
    torch.manual_seed(dropout_seed(t.seed, step, d.rank))
    # Global counts normalise every micro-batch's loss (see ElectraPretrainer.forward); with several
    # processes, those of the whole global batch (summed over ranks), so the ranks' gradients sum to it.
    num_selected, num_tokens = mb.valid.sum(), mb.attention_mask.sum()
    if d.enabled:
        counts = all_reduce_sum(torch.stack([num_selected, num_tokens]), d)
        num_selected, num_tokens = counts[0], counts[1]
    step_stats = torch.zeros(len(STAT_NAMES), device=run.device)
    baseline = None if run.reward_baseline is None else run.reward_baseline.value()  # adversarial: fixed for the step
    micros = mb.split(run.accumulation)
    for i, micro in enumerate(micros):
        # Gradients are reduced over ranks after the last micro-batch only.
        with no_gradient_sync(run.step_fn, last=i == len(micros) - 1) if d.enabled else contextlib.nullcontext():
            with run.autocast():
                loss, stats = run.step_fn(micro, t.seed, t.disc_weight, num_selected, num_tokens, run.phase, baseline)
            loss.backward()
        step_stats += stats
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, t.max_grad_norm)
    if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor, the norm over all shards
        grad_norm = grad_norm.full_tensor()
    bad = ~torch.isfinite(grad_norm)  # a non-finite loss makes the gradient norm non-finite too
    if run.device.type == "cuda" and getattr(run.optimizer, "defaults", {}).get("fused"):
        run.optimizer.found_inf = bad.float()  # the fused kernel skips the whole update when set
        run.optimizer.step()
    elif not bool(bad):
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.reward_baseline is not None:  # adversarial: the global batch's mean reward (a copy: stats stay local)
        summed = all_reduce_sum(step_stats.clone(), d)
        run.reward_baseline.update(summed[STAT_NAMES.index("reward_sum")], summed[STAT_NAMES.index("reward_terms")])
    return StepResult(step_stats, grad_norm, bad, num_tokens, lr, switch)


def enter_phase(run: Run, step: int) -> dict[str, Any] | None:
    """Put the run in the phase of step ``step`` (``phase_at``). At two-stage's switch (the first
    discriminator step, n) the discriminator is initialised from the generator; returns the log record then.

    The record carries step n + 1, the step it precedes, so a resume from the checkpoint of step n (taken
    before the copy) drops it and logs it again when the copy is redone.
    """
    t = run.cfg.train
    run.phase = phase_at(step, t)
    if t.algorithm != "two_stage" or step != t.two_stage_switch_step():
        return None
    copied, total = init_discriminator_from_generator(run.model)
    return {"event": "two_stage_switch", "step": step + 1, "generator_steps": step,
            "copied_tensors": copied, "discriminator_encoder_tensors": total}


# --------------------------------------------------------------------------- what a step's index decides

def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps`` times linear decay to 0 at ``max_steps`` (Google's ELECTRA).

    ``step`` is the 0-based index of the update about to be made.
    """
    warmup = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    decay = max(0.0, 1.0 - step / cfg.max_steps)
    return cfg.learning_rate * warmup * decay


def schedule_position(step: int, t: TrainConfig) -> tuple[int, TrainConfig]:
    """``(step within its stage, a config whose max_steps is the stage's length)`` for ``learning_rate``.

    One stage spanning the run except for two-stage training, whose stages are scheduled as two runs: warm-up
    of ``warmup_steps`` and linear decay to 0 over steps 0..n-1, then again over steps n..max_steps-1.
    """
    if t.algorithm != "two_stage":
        return step, t
    n = t.two_stage_switch_step()
    if step < n:
        return step, dataclasses.replace(t, max_steps=n)
    return step - n, dataclasses.replace(t, max_steps=t.max_steps - n)


def step_learning_rate(step: int, t: TrainConfig) -> float:
    """The learning rate of optimiser step ``step`` (0-based): per stage for two-stage training."""
    return learning_rate(*schedule_position(step, t))


def phase_at(step: int, t: TrainConfig) -> str:
    """The phase (algorithms.PHASES) of optimiser step ``step`` (0-based)."""
    if t.algorithm == "two_stage":
        return "generator" if step < t.two_stage_switch_step() else "discriminator"
    return t.algorithm  # joint | adversarial


def dropout_seed(seed: int, step: int, rank: int) -> int:
    """The seed of this step's dropout masks on this rank. Reseeding every step makes the masks a function of
    (seed, step, rank): a resumed run draws those of the uninterrupted one without saved RNG state, and
    under torchrun each rank draws its own (one shared seed gave every rank the same masks)."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0] >> 1)  # < 2**63
