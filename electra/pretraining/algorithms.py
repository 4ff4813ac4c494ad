"""Training algorithms (paper §3.2, appendix F): ``train.algorithm`` joint | two_stage | adversarial.

``ElectraPretrainer.forward`` (objective.py) runs in one of four *phases*; each phase but ``joint`` (which runs
the objective's own step) has its step here, in ``PHASE_STEPS``:

- ``joint`` (default): MLM + λ·disc, both networks trained together, bit for bit the ELECTRA recipe.
- ``generator``: two-stage training, stage one. The generator's MLM alone; the discriminator is not run.
- ``discriminator``: two-stage training, stage two. The generator is frozen: it runs in eval mode (no dropout)
  under ``torch.no_grad`` and only samples; the loss is λ·disc. Its parameters get no gradient, so AdamW
  (which skips parameters whose ``.grad`` is None) neither updates nor decays them.
- ``adversarial``: the generator is trained by REINFORCE to maximise the discriminator's loss (``reinforce_loss``);
  the discriminator trains on λ·disc as usual. No MLM term for the generator: the paper's adversarial generator
  receives "no explicit feedback about which generated tokens are correct" (appendix F).

Two-stage training switches at step n = ``train.two_stage_generator_steps`` (0: half of ``max_steps``, pinned in
config.json when the run is created). The switch is a function of the step index alone: at the start of step n
(0-based) ``init_discriminator_from_generator`` copies the generator's encoder into the discriminator. A
checkpoint saved at step n was taken before the copy (it happens on resume); one saved after it holds the
copied-then-trained discriminator, and no copy happens on resume. Each stage has its own learning-rate schedule
(step.py's ``schedule_position``): warm-up and linear decay over stage one, then again over stage two, as two runs would.

The phase and the adversarial baseline are the run's state, not the networks': the ``Run`` (setup.py) holds
``phase`` (step.py's ``phase_at`` sets it every step) and ``reward_baseline``, and ``train_step`` passes both to
``ElectraPretrainer.forward``. The baseline (``RewardBaseline``) is a bias-corrected moving average of the mean
reward per step; checkpoints keep it in state.json (``algorithm_state`` / ``load_algorithm_state``), so resume
stays exact and the weights stay plain networks.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from electra.pretraining.batches import MaskedBatch
from electra.pretraining.stats import generator_sums, stack_stats
from electra.pretraining.variants import GradientDisentangledEmbedding

PHASES = ("joint", "generator", "discriminator", "adversarial")
# Decay of the moving average that baselines the REINFORCE reward (~ the last 100 steps).
REWARD_BASELINE_DECAY = 0.99


# --------------------------------------------------------------------------- two-stage

@contextlib.contextmanager
def frozen(network: nn.Module) -> Iterator[None]:
    """Run ``network`` as a fixed function: eval mode (no dropout) and no autograd graph; its mode is restored."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        network.train(was_training)


@torch.no_grad()
def init_discriminator_from_generator(model: nn.Module) -> tuple[int, int]:
    """Copy every generator encoder tensor (``generator.electra.*``) into the discriminator's tensor of the same
    name and shape; the heads differ and are left as they are. Returns (tensors copied, discriminator encoder
    tensors).

    With ``generator.hidden_fraction=1`` and ``layers_fraction=1`` (the paper's two-stage setup) that is the whole
    encoder; a narrower generator shares only the embedding-sized tensors (word, position and type tables and
    their LayerNorm), a shallower one also its layers by index where the widths match. With ``gdes`` sharing
    the discriminator's tables already read the generator's plus a delta: the delta is set to zero.
    """
    source = model.generator.electra.state_dict()
    target = model.discriminator.electra
    own = target.state_dict()
    for module in target.modules():
        if isinstance(module, GradientDisentangledEmbedding):
            module.delta.zero_()
    copied = 0
    for name, tensor in own.items():
        if name in source and source[name].shape == tensor.shape:
            tensor.copy_(source[name])  # state_dict tensors alias the parameters: an in-place copy
            copied += 1
    return copied, len(own)


# --------------------------------------------------------------------------- adversarial

def position_rewards(disc_logits: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The generator's reward at each sampled position: the discriminator's loss there (paper, appendix F).

    disc_logits, labels (B, T) ("replaced?" logits, 1.0 where the input differs from the original);
    positions (B, P). Returns (B, P), no gradient: −log P(replaced) where the sample is a replacement, and
    −log P(original) where the generator guessed the original token.
    """
    bce = F.binary_cross_entropy_with_logits(disc_logits.detach().float(), labels, reduction="none")  # (B, T)
    return bce.gather(1, positions)


def reinforce_loss(gen_logits: torch.Tensor, sampled: torch.Tensor, rewards: torch.Tensor, baseline: torch.Tensor,
                   weight: torch.Tensor, num_selected_total: torch.Tensor) -> torch.Tensor:
    """REINFORCE's surrogate: minimising it ascends E[reward], −Σ (R − b) · log p_G(x̂) / (selected in the batch).

    gen_logits (B, P, V); sampled (B, P) the Gumbel-max samples; rewards (B, P) and the scalar baseline carry no
    gradient; weight (B, P) is 1.0 at valid slots. Normalised by the global count like the MLM loss, so any
    micro-batch split sums to the full-batch gradient.
    """
    log_p = gen_logits.float().log_softmax(-1).gather(-1, sampled[..., None]).squeeze(-1)  # (B, P)
    advantage = (rewards - baseline).detach() * weight
    return -(advantage * log_p).sum() / num_selected_total


class RewardBaseline:
    """The REINFORCE baseline: a bias-corrected exponential moving average of the mean reward of each step.

    ``ema`` = [Σ decay^k · mean reward, Σ decay^k]: the baseline is their ratio (0 before the first step), so the
    first step's mean is taken at full weight. Updated once per optimiser step, after it, from the whole
    batch's sums: a micro-batch split sees the same baseline. Held by the ``Run``; checkpoints carry it in
    state.json (see the module docstring).
    """

    def __init__(self, decay: float = REWARD_BASELINE_DECAY, device: torch.device | None = None):
        self.decay = decay
        self.ema = torch.zeros(2, device=device)

    def value(self) -> torch.Tensor:
        """The current baseline, a 0-d tensor on the baseline's device (no host sync)."""
        num, den = self.ema[0], self.ema[1]
        return torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))

    @torch.no_grad()
    def update(self, reward_sum: torch.Tensor, reward_terms: torch.Tensor) -> None:
        mean = reward_sum / reward_terms.clamp_min(1)
        self.ema.mul_(self.decay).add_(torch.stack([mean, torch.ones_like(mean)]), alpha=1 - self.decay)


def algorithm_state(baseline: RewardBaseline | None) -> dict[str, Any]:
    """What a checkpoint's state.json keeps besides the weights: the adversarial baseline (empty otherwise)."""
    return {} if baseline is None else {"reward_baseline": baseline.ema.tolist()}


def load_algorithm_state(baseline: RewardBaseline | None, state: dict[str, Any]) -> None:
    if baseline is not None and "reward_baseline" in state:
        # float32 -> JSON (a Python float, exact) -> float32: bit-identical.
        baseline.ema.copy_(torch.tensor(state["reward_baseline"], dtype=baseline.ema.dtype))


# --------------------------------------------------------------------------- the phases' losses

def generator_phase_step(model: nn.Module, mb: MaskedBatch, seed: int, disc_weight: float,
                         num_selected_total: torch.Tensor, num_tokens_total: torch.Tensor,
                         reward_baseline: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-stage training, stage one: the generator's MLM alone; no discriminator at all."""
    gen = model.generate(mb, seed, sample=False)
    stats = stack_stats(num_selected=mb.valid.float().sum(), num_tokens=mb.attention_mask.sum(),
                        **generator_sums(gen.losses, gen.logits, gen.targets, mb))
    return gen.losses.sum() / num_selected_total, stats


def discriminator_phase_step(model: nn.Module, mb: MaskedBatch, seed: int, disc_weight: float,
                             num_selected_total: torch.Tensor, num_tokens_total: torch.Tensor,
                             reward_baseline: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-stage training, stage two: the frozen generator only samples; the loss is λ·disc."""
    with frozen(model.generator):
        gen = model.generate(mb, seed)
    det = model.detect(mb, gen.corrupted, num_selected_total, num_tokens_total)
    return disc_weight * det.losses.sum() / det.num_scored_total, model.step_stats(mb, gen, det)


def adversarial_step(model: nn.Module, mb: MaskedBatch, seed: int, disc_weight: float,
                     num_selected_total: torch.Tensor, num_tokens_total: torch.Tensor,
                     reward_baseline: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Adversarial training: REINFORCE on the discriminator's loss at each sampled position, no MLM term for the
    generator; the discriminator's λ·disc as usual."""
    if reward_baseline is None:
        raise ValueError("the adversarial step needs the run's reward baseline (Run.reward_baseline.value())")
    gen = model.generate(mb, seed)
    det = model.detect(mb, gen.corrupted, num_selected_total, num_tokens_total)
    rewards = position_rewards(det.logits, det.labels, mb.positions)  # (B, P)
    sampled = gen.corrupted.gather(1, mb.positions)  # (B, P) the Gumbel-max samples
    weight = mb.valid.float()
    loss = reinforce_loss(gen.logits, sampled, rewards, reward_baseline, weight, num_selected_total) \
        + disc_weight * det.losses.sum() / det.num_scored_total
    return loss, model.step_stats(mb, gen, det, reward_sum=(rewards * weight).sum(), reward_terms=weight.sum())


# The step of every phase but ``joint`` (whose step is the objective's own): the same signature as those plus the
# run's reward baseline (a 0-d tensor, adversarial only), the loss and STAT_NAMES sums of an ``ElectraPretrainer``
# from its ``generate`` and ``detect`` passes (objective.py), normalised by the global batch's counts as there.
PHASE_STEPS = {"generator": generator_phase_step, "discriminator": discriminator_phase_step,
               "adversarial": adversarial_step}
