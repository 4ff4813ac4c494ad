"""Evaluation metrics for fine-tuning: classification, regression, tagging (span F1) and SQuAD.

Plain Python and numpy, so scoring needs neither sklearn nor scipy. Each metric states whose
semantics it copies (sklearn, seqeval/conlleval, the official SQuAD scripts); tests/test_metrics.py
checks them on hand-worked examples and against a transcription of the SQuAD scripts.

Classification and tagging scores are fractions in [0, 1]; SQuAD scores are percentages, like the
official scripts. A metric that is undefined (no positives, constant input, no examples) is 0.0,
as sklearn's ``zero_division=0``, so that "keep the best checkpoint" never compares a NaN.
Mismatched lengths are caller bugs (ValueError); a bad tag or scheme name comes from the user's
data or config (UserError).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from electra.data.examples import QAExample
from electra.errors import UserError


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"predictions and labels differ in length: {len(a)} vs {len(b)}")


# --------------------------------------------------------------------------- classification

def accuracy(preds: Sequence, labels: Sequence) -> float:
    """Fraction of positions where ``preds[i] == labels[i]`` (0.0 when empty)."""
    _same_length(preds, labels)
    return sum(p == y for p, y in zip(preds, labels)) / len(labels) if len(labels) else 0.0


def _f1_from_counts(tp: int, fp: int, fn: int) -> float:
    # 2PR/(P+R) rewritten as 2tp/(2tp+fp+fn): the same number, and defined whenever anything was
    # predicted or expected. With nothing of the class on either side it is 0, as zero_division=0.
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def f1_binary(preds: Sequence, labels: Sequence, positive=1) -> float:
    """F1 of the ``positive`` class (sklearn ``f1_score(average="binary", zero_division=0)``)."""
    _same_length(preds, labels)
    tp = sum(p == positive and y == positive for p, y in zip(preds, labels))
    fp = sum(p == positive and y != positive for p, y in zip(preds, labels))
    fn = sum(p != positive and y == positive for p, y in zip(preds, labels))
    return _f1_from_counts(tp, fp, fn)


def f1_macro(preds: Sequence, labels: Sequence) -> float:
    """Unweighted mean of per-class F1 over the classes in labels ∪ preds (sklearn ``average="macro"``)."""
    _same_length(preds, labels)
    classes = set(labels) | set(preds)
    return sum(f1_binary(preds, labels, c) for c in classes) / len(classes) if classes else 0.0


def matthews_corrcoef(preds: Sequence, labels: Sequence) -> float:
    """Matthews correlation, multiclass form as in sklearn (Gorodkin's R_K); 0.0 when undefined.

    With C the confusion matrix (rows true, columns predicted), t = row sums, p = column sums,
    c = trace and s = total:  (c·s - t·p) / sqrt((s² - p·p)(s² - t·t)). For two classes this is
    the familiar (TP·TN - FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)).
    """
    _same_length(preds, labels)
    t, p = Counter(labels), Counter(preds)
    s, c = len(labels), sum(a == b for a, b in zip(preds, labels))
    t_dot_p = sum(n * p[k] for k, n in t.items())
    # Python ints: exact, and no overflow for large evaluation sets.
    cov_tp = c * s - t_dot_p
    cov_pp = s * s - sum(n * n for n in p.values())
    cov_tt = s * s - sum(n * n for n in t.values())
    if cov_pp * cov_tt == 0:      # one side predicts/holds a single class: correlation undefined
        return 0.0
    return cov_tp / math.sqrt(cov_tt * cov_pp)


# --------------------------------------------------------------------------- regression

def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; NaN when any value is not finite (as scipy), 0.0 when either side is constant or
    empty (scipy would return NaN). Scale-safe: each side is divided by its largest magnitude, centred, and
    divided by its largest deviation before any product, so values near 1e154 (whose squares overflow) or
    1e-154 (whose squares underflow) give what ordinary ones do. Two points: the sign of the slope (as scipy).
    """
    _same_length(x, y)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return math.nan
    # Test constancy directly: x - mean(x) of a constant float array need not be exactly zero.
    if len(x) == 0 or np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    if len(x) == 2:  # one ulp apart, the centred values round to unequal magnitudes: r would be 0.707
        return float(np.sign(x[1] - x[0]) * np.sign(y[1] - y[0]))

    def standardised(v: np.ndarray) -> np.ndarray:
        v = v / np.abs(v).max()          # magnitudes near 1: the mean cannot overflow
        v = v - v.mean()
        return v / np.abs(v).max()       # deviations in [-1, 1]: their products cannot over- or underflow

    x, y = standardised(x), standardised(y)
    return float(np.clip((x @ y) / math.sqrt(float(x @ x) * float(y @ y)), -1.0, 1.0))


def _average_ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing the mean of their positions (scipy ``rankdata(method="average")``)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    is_new = np.r_[True, xs[1:] != xs[:-1]]          # first element of each run of equal values
    run = np.cumsum(is_new) - 1                       # run index of each sorted element
    starts = np.flatnonzero(is_new)
    ends = np.r_[starts[1:], len(x)]                  # exclusive
    ranks = np.empty(len(x))
    ranks[order] = ((starts + 1 + ends) / 2)[run]     # mean of positions start+1 .. end
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson of the average ranks (ties get the mean rank); NaN when any value is not finite
    (a NaN has no rank: scipy gives NaN too)."""
    _same_length(x, y)
    if not (np.isfinite(np.asarray(x, dtype=np.float64)).all() and np.isfinite(np.asarray(y, dtype=np.float64)).all()):
        return math.nan
    return pearson(_average_ranks(x), _average_ranks(y))


def classification_metrics(preds: Sequence, labels: Sequence, num_labels: int, is_regression: bool) -> dict:
    """The GLUE-style bundle: regression -> pearson, spearman, mse; classification -> accuracy,
    f1_macro, mcc, plus f1 (of class 1) when there are two classes. ``preds`` are class ids
    (argmax already taken) or real values."""
    if is_regression:
        err = np.asarray(preds, dtype=np.float64) - np.asarray(labels, dtype=np.float64)
        return {"pearson": pearson(preds, labels), "spearman": spearman(preds, labels),
                "mse": float(np.mean(err ** 2)) if len(err) else 0.0}
    out = {"accuracy": accuracy(preds, labels)}
    if num_labels == 2:
        out["f1"] = f1_binary(preds, labels, positive=1)
    out["f1_macro"] = f1_macro(preds, labels)
    out["mcc"] = matthews_corrcoef(preds, labels)
    return out


# --------------------------------------------------------------------------- tagging

def token_accuracy(pred_seqs: Sequence[Sequence[str]], gold_seqs: Sequence[Sequence[str]]) -> float:
    """Fraction of words whose predicted tag equals the gold tag, over all sentences."""
    _same_length(pred_seqs, gold_seqs)
    right = total = 0
    for i, (pred, gold) in enumerate(zip(pred_seqs, gold_seqs)):
        if len(pred) != len(gold):
            raise ValueError(f"sentence {i}: {len(pred)} predicted tags for {len(gold)} words")
        right += sum(p == g for p, g in zip(pred, gold))
        total += len(gold)
    return right / total if total else 0.0


_SCHEMES = {"auto": None, "iob1": "BI", "iob2": "BI", "bio": "BI", "bioes": "BIES", "iobes": "BIES"}


def _split_tag(tag: str, allowed: str) -> tuple[str, str]:
    """"B-PER" -> ("B", "PER"); "O" -> ("O", ""). The type is everything after the first '-'."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if len(prefix) != 1 or prefix not in allowed or not kind:
        raise UserError(f"tag {tag!r} is not 'O' or one of {', '.join(x + '-TYPE' for x in allowed)}")
    return prefix, kind


def _chunks(tags: Sequence[str], allowed: str) -> list[tuple[str, int, int]]:
    """Entity spans (type, first, last) of one sentence, as seqeval's default ``get_entities``.

    This is conlleval's lenient reading extended to E-/S-: a chunk ends after E- or S-, before
    B-, S- or O, and wherever the type changes; a chunk starts at B- or S-, at I-/E- after O, E-
    or S-, and wherever the type changes. So an I- after O or after another type opens a chunk
    (IOB1's rule, harmless for IOB2), and malformed sequences still decode instead of failing.
    """
    spans, begin = [], 0
    prev_tag, prev_kind = "O", ""
    for i, (tag, kind) in enumerate([_split_tag(t, allowed) for t in tags] + [("O", "")]):
        ends = (prev_tag in "ES" or (prev_tag in "BI" and tag in "BSO")
                or (prev_tag != "O" and prev_kind != kind))
        if ends:
            spans.append((prev_kind, begin, i - 1))
        if tag in "BS" or (tag in "IE" and prev_tag in "ESO") or (tag != "O" and prev_kind != kind):
            begin = i
        prev_tag, prev_kind = tag, kind
    return spans


def _detect_scheme(gold_seqs: Sequence[Sequence[str]]) -> str:
    """"bioes" if any gold tag is E-/S-; else "iob1" if some gold chunk opens with I-; else "iob2"."""
    tags = [_split_tag(t, "BIES") for seq in gold_seqs for t in seq]
    if any(prefix in "ES" for prefix, _ in tags):
        return "bioes"
    for seq in gold_seqs:
        prev = ("O", "")
        for tag in seq:
            cur = _split_tag(tag, "BI")
            if cur[0] == "I" and (prev[0] == "O" or prev[1] != cur[1]):
                return "iob1"
            prev = cur
    return "iob2"


def span_f1(pred_seqs: Sequence[Sequence[str]], gold_seqs: Sequence[Sequence[str]], scheme: str = "auto") -> dict:
    """Entity-level precision/recall/F1 with exact span and type match (conlleval; seqeval default mode).

    Spans are decoded by :func:`_chunks` in every scheme: IOB1 and IOB2 decode identically under
    this lenient reading, BIOES adds E- (closes a chunk) and S- (a one-word chunk). An explicit
    ``scheme`` checks the tag alphabet (E-/S- are refused in IOB1/IOB2); "auto" accepts all five
    prefixes and reports in ``"scheme"`` the scheme the gold tags look like. Returns
    ``{"precision", "recall", "f1", "gold", "pred", "correct", "scheme", "per_type": {type: {...}}}``;
    each per-type entry has the same six numbers. Micro-averaged; 0.0 where a ratio is undefined.
    """
    key = scheme.lower()
    if key not in _SCHEMES:
        raise UserError(f"unknown tagging scheme {scheme!r}; choose one of {', '.join(_SCHEMES)}")
    _same_length(pred_seqs, gold_seqs)
    allowed = _SCHEMES[key] or "BIES"
    gold, pred = set(), set()
    for i, (p, g) in enumerate(zip(pred_seqs, gold_seqs)):
        if len(p) != len(g):
            raise ValueError(f"sentence {i}: {len(p)} predicted tags for {len(g)} words")
        gold.update((i, *span) for span in _chunks(g, allowed))
        pred.update((i, *span) for span in _chunks(p, allowed))

    def scores(g: set, p: set) -> dict:
        c = len(g & p)
        return {"precision": c / len(p) if p else 0.0, "recall": c / len(g) if g else 0.0,
                "f1": _f1_from_counts(c, len(p) - c, len(g) - c), "gold": len(g), "pred": len(p), "correct": c}

    out = scores(gold, pred)
    out["scheme"] = _detect_scheme(gold_seqs) if key == "auto" else key
    kinds = sorted({s[1] for s in gold | pred})
    out["per_type"] = {k: scores({s for s in gold if s[1] == k}, {s for s in pred if s[1] == k}) for k in kinds}
    return out


# --------------------------------------------------------------------------- SQuAD
# These follow the official evaluate-v1.1.py / evaluate-v2.0.py line by line, down to the order of
# the sums and the int-or-float types of the scores, so that results match them bit for bit
# (Python >= 3.12 sums floats with compensation, where int and float terms are not treated alike).

_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (official)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def exact_match(pred: str, gold: str) -> int:
    """1 if the normalised strings are equal, else 0 (official ``compute_exact``)."""
    return int(normalize_answer(gold) == normalize_answer(pred))


def f1_score(pred: str, gold: str) -> float:
    """Bag-of-tokens F1 of the normalised strings (official v2.0 ``compute_f1``).

    If either side is empty (a no-answer) the score is 1 when both are, else 0; like the official
    script those degenerate cases return the ints 0/1.
    """
    gold_toks, pred_toks = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not gold_toks or not pred_toks:
        return int(gold_toks == pred_toks)
    num_same = sum((Counter(gold_toks) & Counter(pred_toks)).values())
    if num_same == 0:
        return 0
    precision, recall = 1.0 * num_same / len(pred_toks), 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def _squad_v1(examples: Sequence[QAExample], predictions: Mapping[str, str]) -> dict:
    # evaluate-v1.1.py: max over all gold answers; a missing prediction scores 0 but still counts;
    # no special case for empty strings (an empty pair has F1 0, but exact match 1).
    exact = f1 = total = 0
    for ex in examples:
        total += 1
        if ex.qid not in predictions:
            continue
        if not ex.answers:
            raise ValueError(f"question {ex.qid} has no gold answer; SQuAD v1.1 scoring needs one (use version='2.0')")
        pred, golds = predictions[ex.qid], [a.text for a in ex.answers]
        exact += max(normalize_answer(pred) == normalize_answer(g) for g in golds)
        f1 += max(f1_score(pred, g) if normalize_answer(g) or normalize_answer(pred) else 0 for g in golds)
    if not total:
        return {"exact": 0.0, "f1": 0.0, "total": 0}
    return {"exact": 100.0 * exact / total, "f1": 100.0 * f1 / total, "total": total}


def _best_thresh(preds: Mapping[str, str], scores: dict, na_probs: Mapping[str, float],
                 has_ans: dict, floor: float = 0.0) -> tuple[float, float]:
    """Official ``find_best_thresh``: sweep the no-answer threshold up through the sorted na_probs.

    Below every probability all questions are answered "no answer" (each NoAns question scores 1);
    raising the threshold past a question's probability swaps in its real prediction, gaining its
    score if it has an answer and losing 1 if it has none and we now answer it anyway.
    """
    cur = sum(1 for q in scores if not has_ans[q] and q in preds)   # official: all NoAns questions
    best, best_thresh = cur, floor  # official: 0.0, below every probability (``floor`` for other scales)
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):          # stable: ties keep dict order
        if qid not in scores or qid not in preds:
            continue
        cur += scores[qid] if has_ans[qid] else (-1 if preds[qid] else 0)
        if cur > best:
            best, best_thresh = cur, na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


def squad_evaluate(examples: Sequence[QAExample], predictions: Mapping[str, str],
                   na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0,
                   version: str = "2.0", na_prob_floor: float = 0.0) -> dict:
    """Score SQuAD predictions (qid -> answer text, "" = no answer) as the official scripts do.

    v2.0: keys exact, f1, total, then HasAns_* and NoAns_* (each only when such questions exist),
    then best_exact, best_exact_thresh, best_f1, best_f1_thresh when ``na_probs`` is given. A
    prediction is replaced by "no answer" when its na_prob > ``na_prob_thresh``. ``na_probs`` may be any score
    that rises with "no answer" (the official script takes probabilities; the fine-tuning passes raw
    null-score differences); best_*_thresh is on its scale: answering "no answer" above it gives best_*.
    ``na_prob_floor``: the threshold reported when answering "no answer" everywhere is best (the official 0.0
    for probabilities; below every score for another scale). Gold answers that
    normalise to "" are dropped; a question with none left (or ``is_impossible``) has gold "".
    v1.1: keys exact (the script's "exact_match"), f1 and total.

    A question missing from ``predictions`` scores 0 and counts in every total. That is v1.1's
    rule; the official v2.0 script crashes (KeyError) instead, so for v2.0 it is our choice.
    """
    if version == "1.1":
        return _squad_v1(examples, predictions)
    if version != "2.0":
        raise ValueError(f"unknown SQuAD version {version!r}; choose '1.1' or '2.0'")
    has_ans = {ex.qid: bool(ex.answers) and not ex.is_impossible for ex in examples}
    exact_raw, f1_raw = {}, {}
    for ex in examples:
        golds = [a.text for a in ex.answers if normalize_answer(a.text)] if has_ans[ex.qid] else []
        golds = golds or [""]                          # unanswerable: the only right answer is ""
        if ex.qid not in predictions:
            exact_raw[ex.qid] = f1_raw[ex.qid] = 0
            continue
        pred = predictions[ex.qid]
        exact_raw[ex.qid] = max(exact_match(pred, g) for g in golds)
        f1_raw[ex.qid] = max(f1_score(pred, g) for g in golds)
    if not exact_raw:
        return {"exact": 0.0, "f1": 0.0, "total": 0}

    probs = na_probs if na_probs is not None else {qid: 0.0 for qid in predictions}
    lacking = [q for q in exact_raw if q in predictions and q not in probs]
    if lacking:
        raise ValueError(f"na_probs has no entry for {len(lacking)} predicted questions, e.g. {lacking[0]}")

    def thresholded(raw: dict) -> dict:               # official apply_no_ans_threshold
        return {q: float(not has_ans[q]) if q in predictions and probs[q] > na_prob_thresh else s
                for q, s in raw.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)

    def block(qids: list) -> dict:                    # official make_eval_dict
        return {"exact": 100.0 * sum(exact[q] for q in qids) / len(qids),
                "f1": 100.0 * sum(f1[q] for q in qids) / len(qids), "total": len(qids)}

    out = block(list(exact))
    for name, want in (("HasAns", True), ("NoAns", False)):
        qids = [q for q, h in has_ans.items() if h == want]
        if qids:
            out.update({f"{name}_{k}": v for k, v in block(qids).items()})
    if na_probs is not None:
        out["best_exact"], out["best_exact_thresh"] = _best_thresh(predictions, exact_raw, na_probs, has_ans,
                                                                   na_prob_floor)
        out["best_f1"], out["best_f1_thresh"] = _best_thresh(predictions, f1_raw, na_probs, has_ans, na_prob_floor)
    return out
