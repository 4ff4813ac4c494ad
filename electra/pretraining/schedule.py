"""Everything a pre-training step's index decides, in one place: its learning rate, its phase (the training
algorithm's stage) and its dropout seed. Each is a function of (step, config) alone, so a resumed run recomputes
exactly what the uninterrupted one had, with no saved state.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from electra.config import TrainConfig


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
