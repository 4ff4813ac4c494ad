"""``ElectraPretrainer``: the generator and the discriminator, and the loss of one pre-training step.

The default step, ELECTRA's, reads top to bottom in ``forward``: ``generate`` (the generator's masked LM at the
selected positions, and its samples there), then ``detect`` (the discriminator's "replaced?" for every token),
then the joint loss MLM + λ·disc. The paper's ablations and algorithms are separate strategies built from the
same two passes, registered rather than branched on:

- ``OBJECTIVE_STEPS``, one step per ``train.objective``: ``electra_step``; electra15 is the same step (it only
  changes which tokens ``detect`` scores); mlm, replace_mlm, all_tokens_mlm ``variants.masked_lm_step``; hybrid
  ``variants.hybrid_step``. The networks and ``generator.sharing`` are variants.py's.
- ``algorithms.PHASE_STEPS``, one step per phase of ``train.algorithm`` two_stage and adversarial, for every phase
  but ``joint``.

Selection and the generator's input are made before the step (masking.py); the sums it returns are stats.py's.

Shapes: B batch, T length, P selected slots per row, V vocabulary.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from electra.config import ModelConfig
from electra.model import ElectraForMaskedLM
from electra.pretraining.algorithms import PHASE_STEPS, PHASES, RewardBaseline
from electra.pretraining.masking import MaskedBatch
from electra.pretraining.replaced_tokens import replaced_labels, sample_replacements, selected_losses
from electra.pretraining.stats import STAT_NAMES, detector_sums, generator_sums, stack_stats
from electra.pretraining.variants import (MASKED_LM_OBJECTIVES, hybrid_step, masked_lm_step, pretraining_network,
                                          share_weights)


class GeneratorPass(NamedTuple):
    """The generator's pass over one micro-batch."""

    logits: torch.Tensor            # (B, P, V) at the selected slots
    targets: torch.Tensor           # (B, P) the original tokens there
    losses: torch.Tensor            # (B, P) float32 masked-LM cross-entropy, zero at invalid slots
    corrupted: torch.Tensor | None  # (B, T) the discriminator's input: samples at the selected positions


class Detection(NamedTuple):
    """The discriminator's pass over one corrupted micro-batch."""

    logits: torch.Tensor            # (B, T) float32 "replaced?" logits
    labels: torch.Tensor            # (B, T) 1.0 where the input differs from the original
    losses: torch.Tensor            # (B, T) binary cross-entropy, zero where not scored
    scored: torch.Tensor            # (B, T) float, the tokens the loss counts
    num_scored_total: torch.Tensor  # how many tokens the whole (global) batch scores


@torch.no_grad()
def init_replaced_prior(discriminator: nn.Module, prior: float) -> None:
    """Start the discriminator's output bias at the log-odds of the replaced fraction (about mask_prob).

    Google's code starts it at 0 (p = 0.5) while ~15% of tokens are replaced. The first updates then
    spend themselves pulling every logit down by ~1.7, and a small post-LN discriminator (``tiny``)
    gets stuck there: it outputs the base rate at every position (per-position logit std ~1e-4) and
    its loss stays at the label entropy for thousands of steps, even when the replacements are
    uniformly random tokens. Starting at the prior, the same model learns at once (docs/electra.md,
    "The discriminator's output bias"). A start value only: it changes no architecture or checkpoint.
    """
    discriminator.discriminator_predictions.dense_prediction.bias.fill_(math.log(prior / (1 - prior)))


class ElectraPretrainer(nn.Module):
    """Generator + discriminator with shared embeddings, and the joint loss MLM + λ·disc.

    ``objective`` and ``sharing`` select the paper's ablations (config.OBJECTIVES, config.SHARING); the
    defaults are ELECTRA, whose step is ``forward`` itself (the others are strategies: see the module docstring).
    The discriminator-sized network is always ``self.discriminator`` (a masked LM for the MLM objectives);
    ``self.generator`` is None for ``mlm``.

    ``algorithm`` (config.ALGORITHMS) sets the starting ``phase`` (algorithms.PHASES): ``joint``, ``adversarial``
    (which adds the ``reward_baseline``), or for ``two_stage`` ``generator``; the training loop moves a two-stage
    run to ``discriminator`` at the switch (algorithms.phase_at).
    """

    def __init__(self, discriminator_config: ModelConfig, generator_config: ModelConfig,
                 objective: str = "electra", sharing: str = "embeddings", algorithm: str = "joint",
                 replaced_prior: float | None = None):
        super().__init__()
        if generator_config.embedding_size != discriminator_config.embedding_size:
            raise ValueError("shared embeddings need the same embedding_size")
        self.objective = objective
        self.phase = "generator" if algorithm == "two_stage" else algorithm
        if self.phase not in PHASES:
            raise ValueError(f"unknown algorithm {algorithm!r}")
        if algorithm == "adversarial":
            self.reward_baseline = RewardBaseline()
        self.discriminator = pretraining_network(discriminator_config, objective)
        if replaced_prior is not None and objective in ("electra", "hybrid"):
            init_replaced_prior(self.discriminator, replaced_prior)
        if objective == "mlm":
            self.generator = None  # BERT: one network, the discriminator-sized masked LM
            return
        if objective == "hybrid":
            # One encoder with two heads: the masked LM (exported as generator/) and the detector.
            self.generator = ElectraForMaskedLM(discriminator_config)
            share_weights(self.generator, self.discriminator, "all")
            return
        self.generator = ElectraForMaskedLM(generator_config)
        if sharing == "embeddings":
            # Token, position and type embeddings and their LayerNorm are one module used by both
            # (the paper's "embeddings" sharing); the generator's output layer stays tied to them.
            self.generator.electra.embeddings = self.discriminator.electra.embeddings
            self.generator.tie_weights()
        else:
            share_weights(self.generator, self.discriminator, sharing)

    def forward(self, mb: MaskedBatch, seed: int, disc_weight: float,
                num_selected_total: torch.Tensor, num_tokens_total: torch.Tensor):
        """Loss of one micro-batch, normalised by the totals of the whole (global) batch.

        Normalising by the global counts instead of per micro-batch makes the summed gradient of
        any micro-batch split (or any number of processes) equal that of the full batch. All shapes
        are fixed by (B, T, P), so the step never waits on the host.
        Returns (loss, stats) with stats a float32 tensor ordered as STAT_NAMES.
        """
        step = PHASE_STEPS[self.phase] if self.phase != "joint" else OBJECTIVE_STEPS[self.objective]
        return step(self, mb, seed, disc_weight, num_selected_total, num_tokens_total)

    def generate(self, mb: MaskedBatch, seed: int, sample: bool = True) -> GeneratorPass:
        """The generator's masked LM at the selected positions only (logits (B, P, V)), and with ``sample`` the
        discriminator's input: a Gumbel-max sample at each selected position, the original token elsewhere."""
        logits = self.generator(mb.generator_input_ids, mb.encoder_mask, mb.token_type_ids, positions=mb.positions,
                                position_ids=mb.position_ids)
        targets = mb.input_ids.gather(1, mb.positions)  # (B, P)
        losses = selected_losses(logits, targets, mb.valid)
        corrupted = sample_replacements(logits, mb, targets, seed) if sample else None  # (B, T), no gradient
        return GeneratorPass(logits, targets, losses, corrupted)

    def detect(self, mb: MaskedBatch, corrupted: torch.Tensor, num_selected_total: torch.Tensor,
               num_tokens_total: torch.Tensor) -> Detection:
        """The discriminator's BCE over every real token (ELECTRA, normalised by the batch's real tokens), or over
        the selected ones only (ELECTRA 15%, normalised by the selected count)."""
        labels = replaced_labels(mb.input_ids, corrupted, mb.attention_mask)  # (B, T)
        logits = self.discriminator(corrupted, mb.encoder_mask, mb.token_type_ids,
                                    position_ids=mb.position_ids).float()  # (B, T)
        if self.objective == "electra15":
            weight = mb.valid.float()
            scored, num_scored_total = weight.new_zeros(labels.shape).scatter(1, mb.positions, weight), num_selected_total
        else:
            scored, num_scored_total = mb.attention_mask.float(), num_tokens_total
        losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * scored
        return Detection(logits, labels, losses, scored, num_scored_total)

    @staticmethod
    def step_stats(mb: MaskedBatch, gen: GeneratorPass, det: Detection, **extra: torch.Tensor) -> torch.Tensor:
        """The STAT_NAMES sums of a step that ran both networks (``extra``: the adversarial reward's)."""
        return stack_stats(num_selected=mb.valid.float().sum(), num_tokens=mb.attention_mask.float().sum(),
                           **detector_sums(det.logits, det.labels, det.losses, det.scored, mb),
                           **generator_sums(gen.losses, gen.logits, gen.targets, mb), **extra)

    @torch.no_grad()
    def end_step(self, step_stats: torch.Tensor) -> None:
        """After an optimiser step, with the step's summed stats: the adversarial baseline takes its mean reward."""
        if self.phase == "adversarial":
            self.reward_baseline.update(step_stats[STAT_NAMES.index("reward_sum")],
                                        step_stats[STAT_NAMES.index("reward_terms")])


def electra_step(model: ElectraPretrainer, mb: MaskedBatch, seed: int, disc_weight: float,
                 num_selected_total: torch.Tensor, num_tokens_total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ELECTRA: the generator fills the selected positions with its samples, the discriminator says for every
    token whether it was replaced, and both learn at once: MLM (mean over the selected) + λ · BCE."""
    gen = model.generate(mb, seed)
    det = model.detect(mb, gen.corrupted, num_selected_total, num_tokens_total)
    loss = gen.losses.sum() / num_selected_total + disc_weight * det.losses.sum() / det.num_scored_total
    return loss, model.step_stats(mb, gen, det)


# The step of each train.objective (config.OBJECTIVES): (model, micro-batch, seed, λ, the global batch's selected
# and real token counts) -> (loss, STAT_NAMES sums). A new objective is a new entry (docs/architecture.md).
OBJECTIVE_STEPS = {"electra": electra_step, "electra15": electra_step, "hybrid": hybrid_step,
                   **{name: masked_lm_step for name in MASKED_LM_OBJECTIVES}}
