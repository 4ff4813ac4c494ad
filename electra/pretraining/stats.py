"""What one pre-training step counts (``STAT_NAMES``, summed on the device over micro-batches) and the means that
metrics.jsonl logs (``summarise_stats``, one host sync per logging window), among them how well the discriminator
detects replacements: its AUC (``binary_auc``) and its loss's margin below the label entropy (``label_entropy``).

Why these and not accuracy or recall. With ~15% of tokens replaced, a discriminator that outputs the base
rate everywhere is 85% accurate with recall 0, and released models still show recall@0.5 of only 0.27-0.49
after 1M steps (google-research/electra issue 81). The AUC (probability that a replaced token scores above
an original one) and the margin H(p) - loss (nats below what a constant predictor of the replaced fraction
p achieves) move from the first step the discriminator learns anything. The fixed held-out yardstick that
every run on the same data shares is in yardstick.py.

Shapes: B batch, T length, P selected slots per row, V vocabulary.
"""

from __future__ import annotations

import math

import torch

from electra.pretraining.batches import MaskedBatch

# Order of the per-batch sums returned by ElectraPretrainer.forward (summed over micro-batches,
# then turned into means by summarise_stats). gen = the generator's MLM; disc = the binary
# discriminator loss over its ``disc_terms`` scored tokens; model_mlm = the discriminator-sized masked LM
# of the MLM objectives (mlm, replace_mlm, all_tokens_mlm); reward = the adversarial generator's REINFORCE
# reward over its ``reward_terms`` sampled positions. corrupted = the network fed ``generator_input_ids``
# (the generator; for ``mlm`` the model) at the selected positions whose input token was corrupted
# ([MASK], or BERT's random token), i.e. without the selected tokens left in place, which it can copy.
# disc_auc = the discriminator's AUC at the candidate tokens of each micro-batch, summed over the
# ``disc_auc_terms`` micro-batches that had both classes (logged as their mean: ``binary_auc``).
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


def stack_stats(**values: torch.Tensor) -> torch.Tensor:
    """A float32 tensor ordered as STAT_NAMES; names not given are 0."""
    zero = torch.zeros((), device=next(iter(values.values())).device)
    return torch.stack([values.get(name, zero).float() for name in STAT_NAMES])


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


# --------------------------------------------------------------------------- detection: AUC and margin

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
