"""The held-out yardstick of replaced-token detection, the same for every run on the same data.

``eval_unigram_auc``: the discriminator's AUC on the held-out slice with 15% of its tokens replaced by seeded
draws from the training data's unigram distribution. A unigram draw looks like any other token, so only
context gives it away. ``eval_uniform_auc``: the same with uniformly random ids, where rare ids give
themselves away, so it also rewards a discriminator that only knows token frequencies. Neither depends on
the run's generator, seed or masking, so runs on the same data can be compared at any step and any recipe. The
two distributions are the data's own (data/loader.py, ``token_distributions``).

Shapes: B batch, T length, P selected slots per row, V vocabulary.
"""

from __future__ import annotations

import torch

from electra.data.loader import eval_batches
from electra.pretraining.batches import SALT_YARDSTICK, candidate_mask, fold64, keyed_uniform, select_positions
from electra.pretraining.stats import binary_auc

# The yardstick's own seed and salt: fixed, so every run on the same data is scored on the same corruption.
YARDSTICK_SEED = 20200311  # ELECTRA's ICLR 2020 publication date
YARDSTICK_MASK_PROB = 0.15
YARDSTICK_EXAMPLES = 512          # held-out examples scored (fewer if the slice is smaller)


def yardstick_corruption(input_ids: torch.Tensor, candidates: torch.Tensor, keys: torch.Tensor,
                         distribution: torch.Tensor) -> torch.Tensor:
    """Replace round(15%) of each row's candidate tokens with draws from ``distribution`` (V,).

    input_ids (B, T); candidates (B, T) bool (real, non-special tokens); keys (B,) the held-out examples'
    keys. The positions and the draws are keyed by (YARDSTICK_SEED, key, position): the same corruption for
    every run, whatever its seed. A draw equal to the original token leaves it original (as ELECTRA labels).
    """
    positions, valid = select_positions(candidates, YARDSTICK_MASK_PROB, keys, YARDSTICK_SEED)  # (B, P)
    u = keyed_uniform(YARDSTICK_SEED, SALT_YARDSTICK, fold64(keys)[:, None], positions)  # (B, P)
    cdf = distribution.to(torch.float64).cumsum(0)  # (V,); zero-probability ids are never reached
    draws = torch.searchsorted(cdf, (u.double() * cdf[-1]).contiguous()).clamp_(max=len(cdf) - 1)  # (B, P)
    draws = torch.where(valid, draws, input_ids.gather(1, positions))
    return input_ids.scatter(1, positions, draws)


@torch.no_grad()
def yardstick_aucs(discriminator: torch.nn.Module, data, distributions: dict[str, torch.Tensor],
                   device: torch.device, batch_size: int, autocast) -> dict[str, float]:
    """``eval_{name}_auc`` for each distribution: the discriminator's AUC at the candidate tokens of the first
    YARDSTICK_EXAMPLES held-out examples, 15% of them replaced (yardstick_corruption).

    ``discriminator`` maps (input_ids, attention_mask, token_type_ids) to (B, T) "replaced" logits. The AUC is
    pooled over all scored tokens (exact, ties counted half)."""
    was_training = discriminator.training
    discriminator.eval()
    scores: dict[str, list[torch.Tensor]] = {name: [] for name in distributions}
    labels: dict[str, list[torch.Tensor]] = {name: [] for name in distributions}
    for batch in eval_batches(data, YARDSTICK_EXAMPLES, batch_size):
        b = {k: v.to(device) for k, v in batch.items()}
        candidates = candidate_mask(b["input_ids"], b["attention_mask"], data.special_ids)  # (B, T)
        for name, dist in distributions.items():
            corrupted = yardstick_corruption(b["input_ids"], candidates, b["keys"], dist.to(device))
            with autocast():
                logits = discriminator(corrupted, b["attention_mask"], b["token_type_ids"]).float()  # (B, T)
            scores[name].append(logits[candidates])
            labels[name].append((corrupted != b["input_ids"])[candidates])
    discriminator.train(was_training)
    out = {}
    for name in distributions:
        s, y = torch.cat(scores[name]), torch.cat(labels[name])
        auc, defined = binary_auc(s, y, torch.ones_like(y))
        out[f"eval_{name}_auc"] = float(auc) if defined else float("nan")
    return out
