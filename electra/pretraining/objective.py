"""``ElectraPretrainer``: the generator and the discriminator, and the loss of one pre-training step for every
``train.objective``.

The default step, ELECTRA's, reads top to bottom in ``forward``: ``generate`` (the generator's masked LM at the
selected positions, and its samples there), then ``detect`` (the discriminator's "replaced?" for every token),
then the joint loss MLM + λ·disc. The paper's ablations and algorithms are separate strategies built from the
same two passes, registered rather than branched on:

- ``OBJECTIVE_STEPS``, one step per ``train.objective``: ``electra_step``; electra15 is the same step (it only
  changes which tokens ``detect`` scores); mlm, replace_mlm, all_tokens_mlm ``masked_lm_step``; hybrid
  ``hybrid_step``. The ablations' networks and ``generator.sharing`` are variants.py's.
- ``algorithms.PHASE_STEPS``, one step per phase of ``train.algorithm`` two_stage and adversarial, for every phase
  but ``joint``.

How tokens are replaced and judged (below the class): the generator's masked-LM losses at the selected slots,
Gumbel-max sampling of its replacements (keyed randomness, batches.py), and the discriminator's labels.
Selection and the generator's input are made before the step (batches.py); the sums it returns are stats.py's.

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
from electra.pretraining.algorithms import PHASE_STEPS
from electra.pretraining.batches import SALT_GUMBEL, MaskedBatch, fold64, keyed_uniform
from electra.pretraining.stats import corrupted_stats, detector_sums, generator_sums, stack_stats
from electra.pretraining.variants import copy_mixture_argmax, copy_mixture_log_prob, pretraining_network, share_weights


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

    The training algorithm's phase and the adversarial baseline are the run's (``Run.phase``,
    ``Run.reward_baseline``), passed to ``forward`` by ``train_step``; the module holds the networks only.
    """

    def __init__(self, discriminator_config: ModelConfig, generator_config: ModelConfig,
                 objective: str = "electra", sharing: str = "embeddings", replaced_prior: float | None = None):
        super().__init__()
        if generator_config.embedding_size != discriminator_config.embedding_size:
            raise ValueError("shared embeddings need the same embedding_size")
        self.objective = objective
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

    def forward(self, mb: MaskedBatch, seed: int, disc_weight: float, num_selected_total: torch.Tensor,
                num_tokens_total: torch.Tensor, phase: str = "joint", reward_baseline: torch.Tensor | None = None):
        """Loss of one micro-batch, normalised by the totals of the whole (global) batch.

        Normalising by the global counts instead of per micro-batch makes the summed gradient of
        any micro-batch split (or any number of processes) equal that of the full batch. All shapes
        are fixed by (B, T, P), so the step never waits on the host. ``phase`` (algorithms.PHASES): the
        objective's own step for ``joint``, else the phase's, which also gets the run's ``reward_baseline``.
        Returns (loss, stats) with stats a float32 tensor ordered as STAT_NAMES.
        """
        if phase == "joint":
            return OBJECTIVE_STEPS[self.objective](self, mb, seed, disc_weight, num_selected_total, num_tokens_total)
        return PHASE_STEPS[phase](self, mb, seed, disc_weight, num_selected_total, num_tokens_total, reward_baseline)

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


def electra_step(model: ElectraPretrainer, mb: MaskedBatch, seed: int, disc_weight: float,
                 num_selected_total: torch.Tensor, num_tokens_total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ELECTRA: the generator fills the selected positions with its samples, the discriminator says for every
    token whether it was replaced, and both learn at once: MLM (mean over the selected) + λ · BCE."""
    gen = model.generate(mb, seed)
    det = model.detect(mb, gen.corrupted, num_selected_total, num_tokens_total)
    loss = gen.losses.sum() / num_selected_total + disc_weight * det.losses.sum() / det.num_scored_total
    return loss, model.step_stats(mb, gen, det)


# --------------------------------------------------------------------------- how tokens are replaced and judged

def selected_losses(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """A masked LM's cross-entropy at the selected slots, float32 (B, P), zero at invalid slots.

    logits (B, P, V), any float dtype; targets (B, P) the original tokens; valid (B, P) bool."""
    B, P = targets.shape
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view(B, P) * valid.float()


def gumbel_sample(logits: torch.Tensor, example_keys: torch.Tensor, positions: torch.Tensor,
                  seed: int) -> torch.Tensor:
    """Sample one token per row from softmax(logits) by Gumbel-max, in float32.

    logits: (..., V), any float dtype; example_keys, positions: (...) int64 — which example and which
    position in it each row belongs to (the noise depends on nothing else). Returns (...) int64.
    float32 matters: Gumbel noise in fp16/bf16 overflows to inf and yields NaNs or a biased argmax.
    """
    vocab = torch.arange(logits.shape[-1], device=logits.device)
    u = keyed_uniform(seed, SALT_GUMBEL, fold64(example_keys)[..., None], positions[..., None], vocab)  # (..., V)
    gumbel = -torch.log(-torch.log(u))
    return (logits.detach().float() + gumbel).argmax(dim=-1)


@torch.no_grad()
def sample_replacements(gen_logits: torch.Tensor, mb: MaskedBatch, targets: torch.Tensor, seed: int) -> torch.Tensor:
    """The corrupted input (B, T): generator samples at the selected positions, the original elsewhere.

    gen_logits (B, P, V); targets (B, P), the original tokens there. Argmax carries no gradient, so
    nothing flows back through the sample.
    """
    B, P = targets.shape
    sampled = gumbel_sample(gen_logits, mb.keys[:, None].expand(B, P), mb.positions, seed)  # (B, P)
    sampled = torch.where(mb.valid, sampled, targets)  # unused slots keep their token
    return mb.input_ids.scatter(1, mb.positions, sampled)  # (B, T)


def replaced_labels(original: torch.Tensor, corrupted: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """1.0 where the discriminator's input differs from the original: a correct guess counts as original."""
    return ((original != corrupted) & attention_mask.bool()).float()


# --------------------------------------------------------------------------- the ablations' steps

MASKED_LM_OBJECTIVES = ("mlm", "replace_mlm", "all_tokens_mlm")  # the discriminator-sized network is a masked LM


def masked_lm_step(model: nn.Module, mb: MaskedBatch, seed: int, disc_weight: float, num_selected_total: torch.Tensor,
                   num_tokens_total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MLM (BERT), Replace MLM and All-Tokens MLM for an ``ElectraPretrainer`` (``model``): the discriminator-sized
    network is a masked LM; no binary loss. Replace/All-Tokens MLM feed it the generator's samples (the generator
    trains as usual, through ``model.generate``). Returns (loss, STAT_NAMES sums) like ``model.forward``."""
    targets = mb.input_ids.gather(1, mb.positions)  # (B, P)
    weight = mb.valid.float()
    real = mb.attention_mask.float()
    stats: dict[str, torch.Tensor] = {"num_selected": weight.sum(), "num_tokens": real.sum()}
    if model.generator is None:  # mlm: BERT's 80/10/10 input
        loss = torch.zeros((), device=real.device)
        model_input = mb.generator_input_ids
    else:
        gen = model.generate(mb, seed)  # samples instead of [MASK]
        loss = gen.losses.sum() / num_selected_total
        model_input = gen.corrupted
        with torch.no_grad():
            stats.update(num_replaced=replaced_labels(mb.input_ids, model_input, mb.attention_mask).sum(),
                         **generator_sums(gen.losses, gen.logits, gen.targets, mb))

    mask = mb.encoder_mask
    if model.objective == "all_tokens_mlm":
        # Predict every real token with the copy mechanism; logits at all T positions (B, T, V).
        logits, copy_logits = model.discriminator(model_input, mask, mb.token_type_ids, position_ids=mb.position_ids)
        nll = -copy_mixture_log_prob(logits, copy_logits, model_input, mb.input_ids) * real  # (B, T)
        loss = loss + nll.sum() / num_tokens_total
        with torch.no_grad():
            predicted = copy_mixture_argmax(logits, copy_logits, model_input)
            stats.update(model_mlm_loss_sum=nll.sum(), model_mlm_terms=real.sum(),
                         model_mlm_correct=((predicted == mb.input_ids) & mb.attention_mask.bool()).sum())
    else:
        # Predict the original tokens at the selected positions only; logits (B, P, V).
        logits = model.discriminator(model_input, mask, mb.token_type_ids, positions=mb.positions,
                                     position_ids=mb.position_ids)
        nll = selected_losses(logits, targets, mb.valid)
        loss = loss + nll.sum() / num_selected_total
        with torch.no_grad():
            correct = (logits.argmax(-1) == targets) & mb.valid
            stats.update(model_mlm_loss_sum=nll.sum(), model_mlm_terms=weight.sum(), model_mlm_correct=correct.sum())
            if model.generator is None:  # mlm: the model is the network fed the masked input
                stats.update(corrupted_stats(nll, correct, mb, targets))
    return loss, stack_stats(**stats)


def hybrid_step(model: nn.Module, mb: MaskedBatch, seed: int, disc_weight: float, num_selected_total: torch.Tensor,
                num_tokens_total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The hybrid objective: one encoder pass over the input in which the selected tokens are [MASK] or a
    ``train.noise`` draw (mb.generator_input_ids). The masked LM predicts the original at every selected
    position, [MASK] or not; the detector says "replaced?" at every real token not shown as [MASK].

    Loss = MLM (mean over the selected) + λ · BCE (summed over the scored tokens / all real tokens of the
    global batch). ``seed`` is unused: the noise was drawn with the masking. Both heads read the same hidden states, so the detector learns from representations
    that the masked LM's dense signal shapes from the first step (COCO-LM, TEAMS; docs/electra.md).
    """
    inp = mb.generator_input_ids  # (B, T)
    h = model.discriminator.electra(inp, mb.encoder_mask, mb.token_type_ids, mb.position_ids)  # (B, T, H)
    hidden_at = h.gather(1, mb.positions[..., None].expand(-1, -1, h.shape[-1]))  # (B, P, H)
    logits = model.generator.generator_lm_head(model.generator.generator_predictions(hidden_at))  # (B, P, V)
    targets = mb.input_ids.gather(1, mb.positions)  # (B, P)
    mlm_losses = selected_losses(logits, targets, mb.valid)
    disc_logits = model.discriminator.discriminator_predictions(h).float()  # (B, T)
    real = mb.attention_mask.float()
    scored = real * ~mb.shown_mask  # the detector does not score [MASK] (B, T)
    labels = replaced_labels(mb.input_ids, inp, mb.attention_mask) * scored
    disc_losses = F.binary_cross_entropy_with_logits(disc_logits, labels, reduction="none") * scored
    loss = mlm_losses.sum() / num_selected_total + disc_weight * disc_losses.sum() / num_tokens_total
    with torch.no_grad():
        weight = mb.valid.float()
        correct = (logits.argmax(-1) == targets) & mb.valid
        stats = stack_stats(num_selected=weight.sum(), num_tokens=real.sum(),
                            model_mlm_loss_sum=mlm_losses.sum(), model_mlm_correct=correct.sum(),
                            model_mlm_terms=weight.sum(), **corrupted_stats(mlm_losses, correct, mb, targets),
                            **detector_sums(disc_logits, labels, disc_losses, scored, mb))
    return loss, stats


# The step of each train.objective (config.OBJECTIVES): (model, micro-batch, seed, λ, the global batch's selected
# and real token counts) -> (loss, STAT_NAMES sums). A new objective is a new entry (docs/architecture.md).
OBJECTIVE_STEPS = {"electra": electra_step, "electra15": electra_step, "hybrid": hybrid_step,
                   **{name: masked_lm_step for name in MASKED_LM_OBJECTIVES}}
