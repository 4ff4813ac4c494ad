"""The replaced-token-detection objective as small pure functions, plus the module that joins them.

All randomness here (which tokens are selected, which become ``[MASK]``, the
Gumbel noise of the sampler) is a *function* of ``(seed, example key, position)``
through a counter-based hash, not a draw from a global random stream. An example
is therefore masked and sampled the same way whatever the batch it lands in, the
micro-batch split, the number of processes or the step a run was resumed at
(DESIGN.md §5, principle 5).

The ablations of the paper (issue 4: ``train.objective`` mlm, electra15, replace_mlm, all_tokens_mlm;
``generator.sharing`` none, all, gdes) are branches of ``ElectraPretrainer``; their networks are built in
variants.py, and whole-word and span selection live in masking.py. The training algorithms
(``train.algorithm`` two_stage, adversarial) are its phases; their pieces live in algorithms.py.

Shapes: B batch, T length, V vocabulary, M selected positions in the batch.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from electra.config import ModelConfig
from electra.model import ElectraForMaskedLM
from electra.pretraining.algorithms import PHASES, RewardBaseline, frozen, position_rewards, reinforce_loss
from electra.pretraining.detection import binary_auc, label_entropy
from electra.pretraining.variants import copy_mixture_argmax, copy_mixture_log_prob, pretraining_network, share_weights

_MASK32 = 0xFFFFFFFF
# Salts keep the uses of the hash independent of one another.
_SALT_SELECT, _SALT_MASK_TOKEN, _SALT_GUMBEL = 0x1B873593, 0x2C1B3C6D, 0x297A2D39
_SALT_RANDOM_TOKEN = 0x3A8F05C5
# BERT's corruption of the selected tokens (train.objective=mlm): 80% [MASK], 10% a random token, 10% kept.
BERT_MASK_TOKEN_PROB, BERT_RANDOM_TOKEN_PROB = 0.8, 0.1


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two multiply-xorshift rounds) on int64 tensors holding values < 2**32.

    The multiplier is below 2**31, so no product overflows int64 and CPU and CUDA agree bit for bit.
    """
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def fold64(k: torch.Tensor) -> torch.Tensor:
    """Hash an int64 key of any size into 32 bits (example keys can exceed 2**32)."""
    return _mix32((k & _MASK32) ^ _mix32((k >> 32) & _MASK32))


def keyed_uniform(seed: int, salt: int, *keys: torch.Tensor) -> torch.Tensor:
    """Uniform floats in (0, 1), float32, one per element of the broadcast of ``keys``.

    Each key is an int64 tensor of values < 2**32 (pass wider keys through ``fold64``). Keys are mixed
    in one at a time, so put small tensors first and the widest broadcast last: only the last mix runs
    over the full output. The seed is mixed on the host: no host-to-device copy, no synchronisation.
    """
    h: torch.Tensor | int = _mix32_int((seed & _MASK32) ^ salt ^ _mix32_int(seed >> 32))
    for k in keys:
        h = _mix32(k ^ h)
    # 24 random bits -> (0, 1); the half-step offset keeps log(u) finite.
    return ((h >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def _mix32_int(x: int) -> int:
    """_mix32 on a Python int (for the seed)."""
    x &= _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def max_selected(seq_len: int, mask_prob: float) -> int:
    """P, the most positions any row of length ``seq_len`` can have selected: the static width of the
    generator's LM-head input (Google's ``max_predictions_per_seq``)."""
    return min(seq_len, max(1, round(seq_len * mask_prob)))


def select_positions(candidates: torch.Tensor, mask_prob: float, keys: torch.Tensor,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose round(mask_prob * n) of each row's n candidate positions (at least one), uniformly.

    candidates: (B, T) bool, True for real, non-special tokens. keys: (B,) int64 example keys.
    Returns positions (B, P) int64 and valid (B, P) bool, P = max_selected(T): row b's selected
    positions are positions[b][valid[b]]; the other slots point at distinct unselected positions.
    Fixed shapes keep the step free of host synchronisation (no boolean indexing), and an exact count
    per row (as Google's code) rather than a coin per token gives every short sequence a prediction.
    """
    B, T = candidates.shape
    P = max_selected(T, mask_prob)
    n = candidates.sum(1)  # (B,)
    k = torch.minimum(torch.clamp((n.to(torch.float32) * mask_prob).round().long(), min=1), n)
    pos = torch.arange(T, device=candidates.device)
    u = keyed_uniform(seed, _SALT_SELECT, fold64(keys)[:, None], pos[None, :])  # (B, T)
    u = torch.where(candidates, u, torch.full_like(u, 2.0))  # non-candidates sort last
    positions = u.argsort(dim=1)[:, :P]  # (B, P) candidates in the order of their draws
    valid = torch.arange(P, device=candidates.device)[None, :] < k[:, None]
    return positions, valid


def selected_mask(positions: torch.Tensor, valid: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B, P) positions + validity -> (B, T) bool."""
    out = torch.zeros(positions.shape[0], seq_len, dtype=torch.bool, device=positions.device)
    return out.scatter(1, positions, valid)


def generator_inputs(input_ids: torch.Tensor, selected: torch.Tensor, mask_id: int, mask_token_prob: float,
                     keys: torch.Tensor, seed: int, random_token_prob: float = 0.0,
                     vocab_size: int = 0, noise_cdf: torch.Tensor | None = None) -> torch.Tensor:
    """ELECTRA's corruption for the generator: of the selected tokens, ``mask_token_prob`` (0.85) become
    [MASK] and the rest keep their token (no random replacement, unlike BERT).

    With ``random_token_prob`` > 0 (BERT: 0.8 / 0.1), a further slice of the selected tokens becomes a
    token drawn uniformly from the ``vocab_size`` ids (it may equal the original, as in BERT), or from the
    distribution whose cumulative sums are ``noise_cdf`` (V,) (the hybrid objective: the unigram distribution).
    """
    T = input_ids.shape[1]
    pos = torch.arange(T, device=input_ids.device)
    u = keyed_uniform(seed, _SALT_MASK_TOKEN, fold64(keys)[:, None], pos[None, :])  # (B, T)
    to_mask = selected & (u < mask_token_prob)
    out = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    if random_token_prob > 0:
        to_random = selected & (u >= mask_token_prob) & (u < mask_token_prob + random_token_prob)
        r = keyed_uniform(seed, _SALT_RANDOM_TOKEN, fold64(keys)[:, None], pos[None, :])  # (B, T)
        if noise_cdf is None:
            random_ids = (r * vocab_size).long().clamp_(max=vocab_size - 1)
        else:  # inverse-CDF draws; ids of probability 0 (the special tokens) are never drawn
            random_ids = torch.searchsorted(noise_cdf, (r.double() * noise_cdf[-1]).contiguous())
            random_ids = random_ids.clamp_(max=len(noise_cdf) - 1)
        out = torch.where(to_random, random_ids, out)
    return out


def gumbel_sample(logits: torch.Tensor, example_keys: torch.Tensor, positions: torch.Tensor,
                  seed: int) -> torch.Tensor:
    """Sample one token per row from softmax(logits) by Gumbel-max, in float32.

    logits: (..., V), any float dtype; example_keys, positions: (...) int64 — which example and which
    position in it each row belongs to (the noise depends on nothing else). Returns (...) int64.
    float32 matters: Gumbel noise in fp16/bf16 overflows to inf and yields NaNs or a biased argmax.
    """
    vocab = torch.arange(logits.shape[-1], device=logits.device)
    u = keyed_uniform(seed, _SALT_GUMBEL, fold64(example_keys)[..., None], positions[..., None], vocab)  # (..., V)
    gumbel = -torch.log(-torch.log(u))
    return (logits.detach().float() + gumbel).argmax(dim=-1)


def replaced_labels(original: torch.Tensor, corrupted: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """1.0 where the discriminator's input differs from the original: a correct guess counts as original."""
    return ((original != corrupted) & attention_mask.bool()).float()


@dataclass
class MaskedBatch:
    """One batch after masking. (B, T): input_ids, attention_mask, token_type_ids, generator_input_ids;
    (B, P): positions, valid; (B,): keys. ``has_padding`` is decided on the host, where it is free.
    ``position_ids`` (B, T) only for the windows of a sequence-length warm-up (None: 0..T-1)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    positions: torch.Tensor
    valid: torch.Tensor
    generator_input_ids: torch.Tensor
    keys: torch.Tensor
    has_padding: bool = True
    position_ids: torch.Tensor | None = None
    candidates: torch.Tensor | None = None  # (B, T) bool, the real non-special tokens (None: attention_mask)
    shown_mask: torch.Tensor | None = None  # (B, T) bool, where generator_input_ids is [MASK]

    _TENSORS = ("input_ids", "attention_mask", "token_type_ids", "positions", "valid", "generator_input_ids", "keys",
                "position_ids", "candidates", "shown_mask")

    @property
    def selected(self) -> torch.Tensor:
        """(B, T) bool: the selected positions."""
        return selected_mask(self.positions, self.valid, self.input_ids.shape[1])

    @property
    def encoder_mask(self) -> torch.Tensor | None:
        """What the encoders get: None when nothing is padded, so SDPA may use its fastest kernel."""
        return self.attention_mask if self.has_padding else None

    def split(self, n: int) -> list["MaskedBatch"]:
        """n micro-batches of equal size when n divides B (sizes differ by at most one otherwise: the
        windows of a sequence-length warm-up); losses are normalised by global counts, so either is exact."""
        parts = {name: [None] * n if getattr(self, name) is None else torch.tensor_split(getattr(self, name), n)
                 for name in self._TENSORS}
        return [MaskedBatch(**{name: parts[name][i] for name in self._TENSORS}, has_padding=self.has_padding)
                for i in range(n)]


def candidate_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: dict[str, int]) -> torch.Tensor:
    """(B, T) bool: the real, non-special tokens (not [PAD], [CLS], [SEP], [MASK]), the ones that can be selected."""
    candidates = attention_mask.bool()
    for name in ("pad", "cls", "sep", "mask"):
        candidates = candidates & (input_ids != special_ids[name])
    return candidates


# select(candidates (B, T) bool, input_ids (B, T), keys (B,), seed) -> (positions (B, P), valid (B, P)):
# whole-word and span selection (masking.make_selector); None is uniform ``select_positions``.
# (candidates, input_ids, keys, seed, word_starts) -> (positions, valid); word_starts (B, T) bool or None
Selector = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, "torch.Tensor | None"],
                    tuple[torch.Tensor, torch.Tensor]]


def mask_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
               keys: torch.Tensor, special_ids: dict[str, int], mask_prob: float, mask_token_prob: float,
               seed: int, has_padding: bool = True, select: Selector | None = None,
               random_token_prob: float = 0.0, vocab_size: int = 0,
               position_ids: torch.Tensor | None = None, noise_cdf: torch.Tensor | None = None,
               word_starts: torch.Tensor | None = None) -> MaskedBatch:
    """Select positions and build the generator's input (dynamic masking: new for every example key).

    ``word_starts`` (B, T) bool: which tokens begin a word, where the data stores it (a word segmenter); the
    whole-word and span selectors use it instead of ``##`` pieces.

    ``generator_input_ids`` is the input of the network that predicts the selected tokens: the generator,
    or with the MLM objective the one masked LM (BERT's corruption: ``random_token_prob`` 0.1).
    """
    candidates = candidate_mask(input_ids, attention_mask, special_ids)
    if select is None:
        positions, valid = select_positions(candidates, mask_prob, keys, seed)
    else:
        positions, valid = select(candidates, input_ids, keys, seed, word_starts)
    selected = selected_mask(positions, valid, input_ids.shape[1])
    gen_in = generator_inputs(input_ids, selected, special_ids["mask"], mask_token_prob, keys, seed,
                              random_token_prob, vocab_size, noise_cdf)
    return MaskedBatch(input_ids, attention_mask, token_type_ids, positions, valid, gen_in, keys, has_padding,
                       position_ids, candidates, gen_in == special_ids["mask"])


# Order of the per-batch sums returned by ElectraPretrainer.forward (summed over micro-batches,
# then turned into means by pretrain.summarise_stats). gen = the generator's MLM; disc = the binary
# discriminator loss over its ``disc_terms`` scored tokens; model_mlm = the discriminator-sized masked LM
# of the MLM objectives (mlm, replace_mlm, all_tokens_mlm); reward = the adversarial generator's REINFORCE
# reward over its ``reward_terms`` sampled positions. corrupted = the network fed ``generator_input_ids``
# (the generator; for ``mlm`` the model) at the selected positions whose input token was corrupted
# ([MASK], or BERT's random token), i.e. without the selected tokens left in place, which it can copy.
# disc_auc = the discriminator's AUC at the candidate tokens of each micro-batch, summed over the
# ``disc_auc_terms`` micro-batches that had both classes (logged as their mean: detection.binary_auc).
STAT_NAMES = ("mlm_loss_sum", "mlm_correct", "num_selected", "disc_loss_sum", "disc_correct", "num_tokens",
              "true_positives", "predicted_replaced", "num_replaced", "disc_terms",
              "model_mlm_loss_sum", "model_mlm_correct", "model_mlm_terms", "reward_sum", "reward_terms",
              "corrupted_loss_sum", "corrupted_correct", "corrupted_terms", "disc_auc_sum", "disc_auc_terms")


@torch.no_grad()
def corrupted_stats(losses: torch.Tensor, correct: torch.Tensor, mb: MaskedBatch,
                    targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sums over the selected positions whose masked-LM input was not the original token.

    losses (B, P) already zero at invalid slots; correct (B, P) bool; targets (B, P) the original tokens.
    This is the loss that says whether a masked LM uses its context: the selected tokens left in place
    are copied from the input and make the overall accuracy look better than it is (docs/finetune.md).
    """
    corrupted = (mb.generator_input_ids.gather(1, mb.positions) != targets) & mb.valid  # (B, P)
    return {"corrupted_loss_sum": (losses * corrupted).sum(), "corrupted_correct": (correct & corrupted).sum(),
            "corrupted_terms": corrupted.sum()}


@torch.no_grad()
def generator_sums(losses: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
                   mb: MaskedBatch) -> dict[str, torch.Tensor]:
    """The generator's STAT_NAMES sums: its MLM loss and correct guesses over the selected positions, and the
    same at the corrupted ones. losses (B, P), zero at invalid slots; logits (B, P, V); targets (B, P)."""
    correct = (logits.argmax(-1) == targets) & mb.valid
    return {"mlm_loss_sum": losses.sum(), "mlm_correct": correct.sum(), **corrupted_stats(losses, correct, mb, targets)}


@torch.no_grad()
def detector_sums(logits: torch.Tensor, labels: torch.Tensor, losses: torch.Tensor, scored: torch.Tensor,
                  mb: MaskedBatch) -> dict[str, torch.Tensor]:
    """The replaced-token detector's STAT_NAMES sums over its scored tokens. logits, labels (1 = replaced),
    losses (zero where not scored), scored: (B, T). The AUC is taken at the scored candidate tokens (not
    [CLS]/[SEP], which are never replaced and would flatter it)."""
    scored_b = scored.bool()
    predicted = (logits > 0) & scored_b
    truth = labels.bool()
    candidates = scored_b if mb.candidates is None else mb.candidates & scored_b
    auc, auc_defined = binary_auc(logits.flatten(), labels.flatten(), candidates.flatten())
    return {"disc_auc_sum": auc, "disc_auc_terms": auc_defined, "disc_loss_sum": losses.sum(),
            "disc_correct": ((predicted == truth) & scored_b).sum(), "true_positives": (predicted & truth).sum(),
            "predicted_replaced": predicted.sum(), "num_replaced": truth.sum(), "disc_terms": scored.sum()}


def _stack_stats(**values: torch.Tensor) -> torch.Tensor:
    """A float32 tensor ordered as STAT_NAMES; names not given are 0."""
    zero = torch.zeros((), device=next(iter(values.values())).device)
    return torch.stack([values.get(name, zero).float() for name in STAT_NAMES])


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
    defaults are ELECTRA. The discriminator-sized network is always ``self.discriminator`` (a masked LM
    for the MLM objectives); ``self.generator`` is None for ``mlm``.

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
        if self.objective in ("mlm", "replace_mlm", "all_tokens_mlm"):
            return self._masked_lm_forward(mb, seed, num_selected_total, num_tokens_total)
        if self.objective == "hybrid":
            return self._hybrid_forward(mb, disc_weight, num_selected_total, num_tokens_total)
        B, P = mb.positions.shape
        mask = mb.encoder_mask
        phase = self.phase
        # Generator: MLM at the selected positions only; logits (B, P, V). Frozen in two-stage's stage two.
        with frozen(self.generator) if phase == "discriminator" else contextlib.nullcontext():
            gen_logits = self.generator(mb.generator_input_ids, mask, mb.token_type_ids, positions=mb.positions,
                                        position_ids=mb.position_ids)
        targets = mb.input_ids.gather(1, mb.positions)  # (B, P)
        weight = mb.valid.float()
        mlm_losses = F.cross_entropy(gen_logits.flatten(0, 1).float(), targets.flatten(),
                                     reduction="none").view(B, P) * weight
        if phase == "generator":  # two-stage, stage one: the generator's MLM alone; no discriminator at all
            stats = _stack_stats(num_selected=weight.sum(), num_tokens=mb.attention_mask.sum(),
                                 **generator_sums(mlm_losses, gen_logits, targets, mb))
            return mlm_losses.sum() / num_selected_total, stats

        disc_input = sample_replacements(gen_logits, mb, targets, seed)  # (B, T)
        labels = replaced_labels(mb.input_ids, disc_input, mb.attention_mask)  # (B, T)

        # Discriminator: BCE over every non-padding token (ELECTRA), or over the selected ones only
        # (ELECTRA 15%, normalised by the selected count).
        disc_logits = self.discriminator(disc_input, mask, mb.token_type_ids,
                                         position_ids=mb.position_ids).float()  # (B, T)
        real = mb.attention_mask.float()
        if self.objective == "electra15":
            scored, num_scored_total = weight.new_zeros(real.shape).scatter(1, mb.positions, weight), num_selected_total
        else:
            scored, num_scored_total = real, num_tokens_total
        disc_losses = F.binary_cross_entropy_with_logits(disc_logits, labels, reduction="none") * scored

        extra: dict[str, torch.Tensor] = {}
        if phase == "joint":
            loss = mlm_losses.sum() / num_selected_total + disc_weight * disc_losses.sum() / num_scored_total
        elif phase == "discriminator":  # two-stage, stage two: the frozen generator only samples
            loss = disc_weight * disc_losses.sum() / num_scored_total
        else:  # adversarial: REINFORCE on the discriminator's loss at each sampled position, no MLM term
            rewards = position_rewards(disc_logits, labels, mb.positions)  # (B, P)
            sampled = disc_input.gather(1, mb.positions)  # (B, P) the Gumbel-max samples
            loss = reinforce_loss(gen_logits, sampled, rewards, self.reward_baseline.value(), weight,
                                  num_selected_total) + disc_weight * disc_losses.sum() / num_scored_total
            extra = {"reward_sum": (rewards * weight).sum(), "reward_terms": weight.sum()}

        stats = _stack_stats(num_selected=weight.sum(), num_tokens=real.sum(),
                             **detector_sums(disc_logits, labels, disc_losses, scored, mb),
                             **generator_sums(mlm_losses, gen_logits, targets, mb), **extra)
        return loss, stats

    def _hybrid_forward(self, mb: MaskedBatch, disc_weight: float, num_selected_total: torch.Tensor,
                        num_tokens_total: torch.Tensor):
        """The hybrid objective: one encoder pass over the input in which the selected tokens are [MASK] or a
        ``train.noise`` draw (mb.generator_input_ids). The masked LM predicts the original at every selected
        position, [MASK] or not; the detector says "replaced?" at every real token not shown as [MASK].

        Loss = MLM (mean over the selected) + λ · BCE (summed over the scored tokens / all real tokens of the
        global batch). Both heads read the same hidden states, so the detector learns from representations
        that the masked LM's dense signal shapes from the first step (COCO-LM, TEAMS; docs/electra.md).
        """
        B, P = mb.positions.shape
        inp = mb.generator_input_ids  # (B, T)
        h = self.discriminator.electra(inp, mb.encoder_mask, mb.token_type_ids, mb.position_ids)  # (B, T, H)
        hidden_at = h.gather(1, mb.positions[..., None].expand(-1, -1, h.shape[-1]))  # (B, P, H)
        logits = self.generator.generator_lm_head(self.generator.generator_predictions(hidden_at))  # (B, P, V)
        targets = mb.input_ids.gather(1, mb.positions)  # (B, P)
        weight = mb.valid.float()
        mlm_losses = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                                     reduction="none").view(B, P) * weight
        disc_logits = self.discriminator.discriminator_predictions(h).float()  # (B, T)
        real = mb.attention_mask.float()
        scored = real * ~mb.shown_mask  # the detector does not score [MASK] (B, T)
        labels = replaced_labels(mb.input_ids, inp, mb.attention_mask) * scored
        disc_losses = F.binary_cross_entropy_with_logits(disc_logits, labels, reduction="none") * scored
        loss = mlm_losses.sum() / num_selected_total + disc_weight * disc_losses.sum() / num_tokens_total
        with torch.no_grad():
            correct = (logits.argmax(-1) == targets) & mb.valid
            stats = _stack_stats(num_selected=weight.sum(), num_tokens=real.sum(),
                                 model_mlm_loss_sum=mlm_losses.sum(), model_mlm_correct=correct.sum(),
                                 model_mlm_terms=weight.sum(), **corrupted_stats(mlm_losses, correct, mb, targets),
                                 **detector_sums(disc_logits, labels, disc_losses, scored, mb))
        return loss, stats

    @torch.no_grad()
    def end_step(self, step_stats: torch.Tensor) -> None:
        """After an optimiser step, with the step's summed stats: the adversarial baseline takes its mean reward."""
        if self.phase == "adversarial":
            self.reward_baseline.update(step_stats[STAT_NAMES.index("reward_sum")],
                                        step_stats[STAT_NAMES.index("reward_terms")])

    def _masked_lm_forward(self, mb: MaskedBatch, seed: int, num_selected_total: torch.Tensor,
                           num_tokens_total: torch.Tensor):
        """MLM (BERT), Replace MLM and All-Tokens MLM: the discriminator-sized network is a masked LM; no
        binary loss. Replace/All-Tokens MLM feed it the generator's samples (the generator trains as usual)."""
        B, P = mb.positions.shape
        mask = mb.encoder_mask
        targets = mb.input_ids.gather(1, mb.positions)  # (B, P)
        weight = mb.valid.float()
        real = mb.attention_mask.float()
        stats: dict[str, torch.Tensor] = {"num_selected": weight.sum(), "num_tokens": real.sum()}
        if self.generator is None:  # mlm: BERT's 80/10/10 input
            loss = torch.zeros((), device=real.device)
            model_input = mb.generator_input_ids
        else:
            gen_logits = self.generator(mb.generator_input_ids, mask, mb.token_type_ids, positions=mb.positions,
                                        position_ids=mb.position_ids)
            mlm_losses = F.cross_entropy(gen_logits.flatten(0, 1).float(), targets.flatten(),
                                         reduction="none").view(B, P) * weight
            loss = mlm_losses.sum() / num_selected_total
            model_input = sample_replacements(gen_logits, mb, targets, seed)  # samples instead of [MASK]
            with torch.no_grad():
                stats.update(num_replaced=replaced_labels(mb.input_ids, model_input, mb.attention_mask).sum(),
                             **generator_sums(mlm_losses, gen_logits, targets, mb))

        if self.objective == "all_tokens_mlm":
            # Predict every real token with the copy mechanism; logits at all T positions (B, T, V).
            logits, copy_logits = self.discriminator(model_input, mask, mb.token_type_ids,
                                                     position_ids=mb.position_ids)
            nll = -copy_mixture_log_prob(logits, copy_logits, model_input, mb.input_ids) * real  # (B, T)
            loss = loss + nll.sum() / num_tokens_total
            with torch.no_grad():
                predicted = copy_mixture_argmax(logits, copy_logits, model_input)
                stats.update(model_mlm_loss_sum=nll.sum(), model_mlm_terms=real.sum(),
                             model_mlm_correct=((predicted == mb.input_ids) & mb.attention_mask.bool()).sum())
        else:
            # Predict the original tokens at the selected positions only; logits (B, P, V).
            logits = self.discriminator(model_input, mask, mb.token_type_ids, positions=mb.positions,
                                        position_ids=mb.position_ids)
            nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view(B, P) * weight
            loss = loss + nll.sum() / num_selected_total
            with torch.no_grad():
                correct = (logits.argmax(-1) == targets) & mb.valid
                stats.update(model_mlm_loss_sum=nll.sum(), model_mlm_terms=weight.sum(),
                             model_mlm_correct=correct.sum())
                if self.generator is None:  # mlm: the model is the network fed the masked input
                    stats.update(corrupted_stats(nll, correct, mb, targets))
        return loss, _stack_stats(**stats)


def summarise_stats(stats: torch.Tensor) -> dict[str, float]:
    """Turn summed STAT_NAMES counts into the logged means (one host sync).

    ``mlm_loss`` / ``mlm_acc`` (the discriminator-sized masked LM) appear only for the MLM objectives.
    ``corrupted_loss`` / ``corrupted_acc``: the masked LM fed the corrupted input (the generator; for ``mlm``
    the model) at the selected positions it cannot copy; compare with the corpus's unigram entropy.
    """
    s = dict(zip(STAT_NAMES, stats.tolist()))
    div = lambda a, b: a / b if b else 0.0  # noqa: E731
    out = {
        "gen_loss": div(s["mlm_loss_sum"], s["num_selected"]),
        "gen_acc": div(s["mlm_correct"], s["num_selected"]),
        "disc_loss": div(s["disc_loss_sum"], s["disc_terms"]),
        "disc_acc": div(s["disc_correct"], s["disc_terms"]),
        "disc_precision": div(s["true_positives"], s["predicted_replaced"]),
        "disc_recall": div(s["true_positives"], s["num_replaced"]),
        "replaced_frac": div(s["num_replaced"], s["num_tokens"]),
        "selected_frac": div(s["num_selected"], s["num_tokens"]),
    }
    if s["model_mlm_terms"]:
        out.update(mlm_loss=div(s["model_mlm_loss_sum"], s["model_mlm_terms"]),
                   mlm_acc=div(s["model_mlm_correct"], s["model_mlm_terms"]))
    if s["disc_terms"]:
        # The margin below the label entropy: what the discriminator knows beyond the replaced fraction p.
        entropy = label_entropy(div(s["num_replaced"], s["disc_terms"]))
        out.update(disc_entropy=entropy, disc_margin=entropy - out["disc_loss"])
    if s["disc_auc_terms"]:
        out["disc_auc"] = div(s["disc_auc_sum"], s["disc_auc_terms"])
    if s["reward_terms"]:
        out["reward"] = div(s["reward_sum"], s["reward_terms"])
    if s["corrupted_terms"]:
        out.update(corrupted_loss=div(s["corrupted_loss_sum"], s["corrupted_terms"]),
                   corrupted_acc=div(s["corrupted_correct"], s["corrupted_terms"]))
    return out
