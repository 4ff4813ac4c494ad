"""The replaced-token-detection objective as small pure functions, plus the module that joins them.

All randomness here (which tokens are selected, which become ``[MASK]``, the
Gumbel noise of the sampler) is a *function* of ``(seed, example key, position)``
through a counter-based hash, not a draw from a global random stream. An example
is therefore masked and sampled the same way whatever the batch it lands in, the
micro-batch split, the number of processes or the step a run was resumed at
(DESIGN.md §5, principle 5).

Shapes: B batch, T length, V vocabulary, M selected positions in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from electra.config import ModelConfig
from electra.model import ElectraForMaskedLM, ElectraForPreTraining

_MASK32 = 0xFFFFFFFF
# Salts keep the three uses of the hash independent of one another.
_SALT_SELECT, _SALT_MASK_TOKEN, _SALT_GUMBEL = 0x1B873593, 0x2C1B3C6D, 0x297A2D39


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
    over the full output.
    """
    h = torch.tensor(_mix32_int(((seed & _MASK32) ^ salt ^ _mix32_int(seed >> 32)) & _MASK32),
                     dtype=torch.int64, device=keys[0].device)
    for k in keys:
        h = _mix32(h ^ k)
    # 24 random bits -> (0, 1); the half-step offset keeps log(u) finite.
    return ((h >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def _mix32_int(x: int) -> int:
    """_mix32 on a Python int (for the seed)."""
    x &= _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def select_positions(candidates: torch.Tensor, mask_prob: float, keys: torch.Tensor, seed: int) -> torch.Tensor:
    """Choose round(mask_prob * n) of each row's n candidate positions (at least one), uniformly.

    candidates: (B, T) bool, True for real, non-special tokens. keys: (B,) int64 example keys.
    Returns (B, T) bool. An exact count per row (as Google's code) rather than an independent coin per
    token keeps short sequences from getting no prediction at all.
    """
    B, T = candidates.shape
    n = candidates.sum(1)  # (B,)
    k = torch.clamp((n.to(torch.float32) * mask_prob).round().long(), min=1)
    k = torch.minimum(k, n)
    pos = torch.arange(T, device=candidates.device)
    u = keyed_uniform(seed, _SALT_SELECT, fold64(keys)[:, None], pos[None, :])  # (B, T)
    u = torch.where(candidates, u, torch.full_like(u, 2.0))  # non-candidates sort last
    rank = u.argsort(dim=1).argsort(dim=1)  # (B, T) rank of each position's draw within its row
    return rank < k[:, None]


def generator_inputs(input_ids: torch.Tensor, selected: torch.Tensor, mask_id: int, mask_token_prob: float,
                     keys: torch.Tensor, seed: int) -> torch.Tensor:
    """ELECTRA's corruption for the generator: of the selected tokens, ``mask_token_prob`` (0.85) become
    [MASK] and the rest keep their token (no random replacement, unlike BERT)."""
    T = input_ids.shape[1]
    pos = torch.arange(T, device=input_ids.device)
    u = keyed_uniform(seed, _SALT_MASK_TOKEN, fold64(keys)[:, None], pos[None, :])  # (B, T)
    to_mask = selected & (u < mask_token_prob)
    return torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)


def gumbel_sample(logits: torch.Tensor, example_keys: torch.Tensor, positions: torch.Tensor,
                  seed: int) -> torch.Tensor:
    """Sample one token per row from softmax(logits) by Gumbel-max, in float32.

    logits: (M, V), any float dtype; example_keys, positions: (M,) int64 — which example and which
    position in it each row belongs to (the noise depends on nothing else). Returns (M,) int64.
    float32 matters: Gumbel noise in fp16/bf16 overflows to inf and yields NaNs or a biased argmax.
    """
    V = logits.shape[-1]
    vocab = torch.arange(V, device=logits.device)
    u = keyed_uniform(seed, _SALT_GUMBEL, fold64(example_keys)[:, None], positions[:, None], vocab[None, :])  # (M, V)
    gumbel = -torch.log(-torch.log(u))
    return (logits.detach().float() + gumbel).argmax(dim=-1)


def replaced_labels(original: torch.Tensor, corrupted: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """1.0 where the discriminator's input differs from the original: a correct guess counts as original."""
    return ((original != corrupted) & attention_mask.bool()).float()


@dataclass
class MaskedBatch:
    """One batch after masking; every tensor is (B, T) except ``keys`` (B,)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    selected: torch.Tensor
    generator_input_ids: torch.Tensor
    keys: torch.Tensor

    def split(self, n: int) -> list["MaskedBatch"]:
        """n equal micro-batches (B must be divisible by n)."""
        fields = [torch.chunk(getattr(self, name), n) for name in self.__dataclass_fields__]
        return [MaskedBatch(*parts) for parts in zip(*fields)]

    def to(self, device: torch.device) -> "MaskedBatch":
        return MaskedBatch(*(getattr(self, name).to(device, non_blocking=True) for name in self.__dataclass_fields__))


def mask_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
               keys: torch.Tensor, special_ids: dict[str, int], mask_prob: float, mask_token_prob: float,
               seed: int) -> MaskedBatch:
    """Select positions and build the generator's input (dynamic masking: new for every example key)."""
    special = torch.tensor([special_ids[k] for k in ("pad", "cls", "sep", "mask")], device=input_ids.device)
    candidates = attention_mask.bool() & ~torch.isin(input_ids, special)
    selected = select_positions(candidates, mask_prob, keys, seed)
    gen_in = generator_inputs(input_ids, selected, special_ids["mask"], mask_token_prob, keys, seed)
    return MaskedBatch(input_ids, attention_mask, token_type_ids, selected, gen_in, keys)


# Order of the per-batch sums returned by ElectraPretrainer.forward (summed over micro-batches,
# then turned into means by pretrain.summarise_stats).
STAT_NAMES = ("mlm_loss_sum", "mlm_correct", "num_selected", "disc_loss_sum", "disc_correct", "num_tokens",
              "true_positives", "predicted_replaced", "num_replaced")


class ElectraPretrainer(nn.Module):
    """Generator + discriminator with shared embeddings, and the joint loss MLM + λ·disc."""

    def __init__(self, discriminator_config: ModelConfig, generator_config: ModelConfig):
        super().__init__()
        if generator_config.embedding_size != discriminator_config.embedding_size:
            raise ValueError("shared embeddings need the same embedding_size")
        self.discriminator = ElectraForPreTraining(discriminator_config)
        self.generator = ElectraForMaskedLM(generator_config)
        # Token, position and type embeddings and their LayerNorm are one module used by both
        # (the paper's "embeddings" sharing); the generator's output layer stays tied to them.
        self.generator.electra.embeddings = self.discriminator.electra.embeddings
        self.generator.tie_weights()

    def forward(self, mb: MaskedBatch, seed: int, disc_weight: float,
                num_selected_total: torch.Tensor, num_tokens_total: torch.Tensor):
        """Loss of one micro-batch, normalised by the totals of the whole (global) batch.

        Normalising by the global counts instead of per micro-batch makes the summed gradient of
        any micro-batch split (or any number of processes) equal that of the full batch.
        Returns (loss, stats) with stats a float32 tensor ordered as STAT_NAMES.
        """
        # Generator: MLM on the selected positions only; logits (M, V).
        gen_logits = self.generator(mb.generator_input_ids, mb.attention_mask, mb.token_type_ids,
                                    positions=mb.selected)
        targets = mb.input_ids[mb.selected]  # (M,)
        mlm_losses = F.cross_entropy(gen_logits.float(), targets, reduction="none")  # (M,)

        # Sample replacements; argmax carries no gradient, so nothing flows back through the sample.
        example_index, positions = mb.selected.nonzero(as_tuple=True)  # (M,), (M,) in row-major order
        with torch.no_grad():
            sampled = gumbel_sample(gen_logits, mb.keys[example_index], positions, seed)
            disc_input = mb.input_ids.clone()
            disc_input[mb.selected] = sampled
            labels = replaced_labels(mb.input_ids, disc_input, mb.attention_mask)  # (B, T)

        # Discriminator: BCE over every non-padding token.
        disc_logits = self.discriminator(disc_input, mb.attention_mask, mb.token_type_ids).float()  # (B, T)
        real = mb.attention_mask.bool()
        disc_losses = F.binary_cross_entropy_with_logits(disc_logits[real], labels[real], reduction="none")

        loss = mlm_losses.sum() / num_selected_total + disc_weight * disc_losses.sum() / num_tokens_total

        with torch.no_grad():
            predicted = (disc_logits > 0)[real]
            truth = labels[real].bool()
            stats = torch.stack([
                mlm_losses.sum(),
                (gen_logits.argmax(-1) == targets).sum().float(),
                torch.tensor(float(targets.numel()), device=loss.device),
                disc_losses.sum(),
                (predicted == truth).sum().float(),
                real.sum().float(),
                (predicted & truth).sum().float(),
                predicted.sum().float(),
                truth.sum().float(),
            ]).float()
        return loss, stats


def summarise_stats(stats: torch.Tensor) -> dict[str, float]:
    """Turn summed STAT_NAMES counts into the logged means (one host sync)."""
    s = dict(zip(STAT_NAMES, stats.tolist()))
    div = lambda a, b: a / b if b else 0.0  # noqa: E731
    return {
        "gen_loss": div(s["mlm_loss_sum"], s["num_selected"]),
        "gen_acc": div(s["mlm_correct"], s["num_selected"]),
        "disc_loss": div(s["disc_loss_sum"], s["num_tokens"]),
        "disc_acc": div(s["disc_correct"], s["num_tokens"]),
        "disc_precision": div(s["true_positives"], s["predicted_replaced"]),
        "disc_recall": div(s["true_positives"], s["num_replaced"]),
        "replaced_frac": div(s["num_replaced"], s["num_tokens"]),
        "selected_frac": div(s["num_selected"], s["num_tokens"]),
    }
