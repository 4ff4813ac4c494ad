"""How well the discriminator detects replacements: its AUC and its loss's margin below the label entropy.

Why these and not accuracy or recall. With ~15% of tokens replaced, a discriminator that outputs the base
rate everywhere is 85% accurate with recall 0, and released models still show recall@0.5 of only 0.27-0.49
after 1M steps (google-research/electra issue 81). The AUC (probability that a replaced token scores above
an original one) and the margin H(p) - loss (nats below what a constant predictor of the replaced fraction
p achieves) move from the first step the discriminator learns anything.

The fixed held-out yardstick that every run on the same data shares is in yardstick.py.
"""

from __future__ import annotations

import math

import torch


def binary_auc(scores: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AUC of ``scores`` for ``labels`` over the elements where ``weight`` is true, with ties counted half.

    scores (N,) float; labels (N,) bool/float; weight (N,) bool. Returns (auc, defined): 0-d tensors, auc 0 and
    defined 0 when the weighted elements lack one of the classes. No boolean indexing and no host sync (the
    Mann-Whitney U from mid-ranks: the elements left out sort above all others and are never counted).
    """
    weight = weight.bool()
    positive = labels.bool() & weight
    s = torch.where(weight, scores.float(), torch.full_like(scores, float("inf"), dtype=torch.float32))
    ordered = s.sort().values
    below = torch.searchsorted(ordered, s, side="left")        # elements strictly below each score
    at_or_below = torch.searchsorted(ordered, s, side="right")
    mid_rank = (below + at_or_below + 1).double() / 2          # 1-based rank, ties averaged
    n_pos = positive.sum().double()
    n_neg = weight.sum().double() - n_pos
    u = (mid_rank * positive).sum() - n_pos * (n_pos + 1) / 2
    defined = (n_pos > 0) & (n_neg > 0)
    auc = torch.where(defined, u / (n_pos * n_neg).clamp(min=1), torch.zeros_like(u))
    return auc.float(), defined.float()


def label_entropy(p: float) -> float:
    """H(p) in nats: the BCE of a constant predictor that outputs the replaced fraction p."""
    if p <= 0 or p >= 1:
        return 0.0
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))
