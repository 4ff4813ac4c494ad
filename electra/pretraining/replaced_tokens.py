"""How tokens are replaced and judged: the generator's masked-LM losses at the selected slots, Gumbel-max sampling of
its replacements, and the labels the discriminator learns ("replaced?" per token).

Shapes: B batch, T length, P selected slots per row, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from electra.pretraining.keyed_random import SALT_GUMBEL, fold64, keyed_uniform
from electra.pretraining.masking import MaskedBatch


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
