"""Extractive question answering: examples -> token windows (features) and logits -> answer text.

The same job as BERT/ELECTRA's SQuAD code and transformers' ``run_qa.py``
(prepare_train_features / prepare_validation_features / postprocess_qa_predictions), written
against our ``tokenizers.Tokenizer`` directly.

Windows. The question and the context are tokenized separately (without special tokens), which is
exactly what the tokenizer does for a pair, and each window is assembled as
``[CLS] question [SEP] context[a:b] [SEP]`` with token types 0 for ``[CLS] question [SEP]`` and 1
for the rest (the BERT pair template). The question keeps its first ``max_query_length`` tokens.
A window holds at most ``max_seq_length - len(question) - 3`` context tokens; ``doc_stride`` is the
distance between the first context tokens of consecutive windows, as in Google's BERT and ELECTRA
code (transformers' ``run_qa.py`` instead passes it as the *overlap* of consecutive windows). The
last window is the first one that reaches the end of the context, so every context token lies in at
least one window; a stride larger than a window is clamped to the window, so none is skipped.
Every example has at least one window, even with an empty context.

Locating the answer (training uses the first gold answer). The stated character offset is taken
when ``context[start:start + len(text)] == text``; otherwise the occurrence of ``text`` in the
context nearest to the stated offset is used (offsets that are off by a few characters, e.g. counted
in bytes or after whitespace cleaning, land nearest the intended occurrence) and counted as
``answer_relocated``. An answer whose text does not occur in the context, is empty, or covers no
token (only whitespace or characters the normaliser drops), and in training a possible question
without any gold answer, are counted as ``answer_not_in_context``;
in training the example is skipped, in evaluation it is kept with [CLS] labels. The answer's tokens
are those whose character span overlaps it, so when an answer boundary cuts a word piece the label
covers that whole piece (decoding it gives the smallest token-aligned span around the answer).

Shapes: F features (windows), L a window's length (<= max_seq_length), padded to a common length
when batched by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from electra.data.examples import QAAnswer, QAExample
from electra.data.tokenizer import special_token_ids
from electra.errors import UserError

Offset = tuple[int, int] | None


@dataclass
class QAFeatures:
    """One entry per window, in order; the windows of one example are consecutive."""

    input_ids: list[list[int]] = field(default_factory=list)
    token_type_ids: list[list[int]] = field(default_factory=list)   # 0 = [CLS] question [SEP], 1 = context [SEP]
    example_index: list[int] = field(default_factory=list)          # index into the examples given to featurize_qa
    offsets: list[list[Offset]] = field(default_factory=list)       # (char_start, char_end) in the context; None off it
    start_positions: list[int] = field(default_factory=list)        # answer's first token here, 0 ([CLS]) if absent
    end_positions: list[int] = field(default_factory=list)          # answer's last token here, 0 ([CLS]) if absent

    def __len__(self) -> int:
        return len(self.input_ids)


# --------------------------------------------------------------------------- featurizing

def _plain_copy(tok: Tokenizer) -> Tokenizer:
    """``tok`` itself when it neither truncates nor pads, else a copy that does neither (tok is untouched)."""
    if tok.truncation is None and tok.padding is None:
        return tok
    copy = Tokenizer.from_str(tok.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def locate_answer(context: str, text: str, start: int) -> tuple[int, bool] | None:
    """(character start, relocated?) of ``text`` in ``context``, or None when it is not there (module docstring)."""
    if not text:
        return None
    if 0 <= start and context[start:start + len(text)] == text:
        return start, False
    found, i = [], context.find(text)
    while i != -1:
        found.append(i)
        i = context.find(text, i + 1)
    if not found:
        return None
    return min(found, key=lambda s: (abs(s - start), s)), True


def _answer_tokens(offsets: list[tuple[int, int]], char_start: int, char_end: int) -> tuple[int, int] | None:
    """First and last token (indices into the context's tokens) overlapping [char_start, char_end), or None."""
    inside = [i for i, (s, e) in enumerate(offsets) if s < char_end and e > char_start and e > s]
    return (inside[0], inside[-1]) if inside else None


def featurize_qa(examples: Sequence[QAExample], tokenizer: Tokenizer, *, max_seq_length: int = 384,
                 doc_stride: int = 128, max_query_length: int = 64,
                 training: bool) -> tuple[QAFeatures, dict]:
    """Split each (question, context) into windows of at most ``max_seq_length`` tokens, with labels.

    Returns the features and counts: examples, windows, questions_truncated, answer_not_in_context,
    answer_relocated, impossible, windows_without_answer (training windows labelled [CLS]).
    See the module docstring for the window and answer-location rules.
    """
    if max_query_length < 1 or max_seq_length < max_query_length + 4:
        raise UserError(f"max_seq_length {max_seq_length} leaves no room for context after a question of "
                        f"max_query_length {max_query_length} and 3 special tokens; give max_seq_length of at "
                        f"least max_query_length + 4 (384 and 64 are usual)")
    if doc_stride < 1:
        raise UserError(f"doc_stride {doc_stride} must be at least 1 (128 is usual)")
    tok = _plain_copy(tokenizer)
    ids = special_token_ids(tok)
    cls, sep = ids["cls"], ids["sep"]

    # Encode in batches (Rust, parallel); SQuAD asks ~5 questions per paragraph, so contexts are shared.
    questions = tok.encode_batch([ex.question for ex in examples], add_special_tokens=False)
    unique_contexts = list(dict.fromkeys(ex.context for ex in examples))
    context_encodings = dict(zip(unique_contexts, tok.encode_batch(unique_contexts, add_special_tokens=False)))

    feats = QAFeatures()
    counts = dict(examples=len(examples), windows=0, questions_truncated=0, answer_not_in_context=0,
                  answer_relocated=0, impossible=0, windows_without_answer=0)
    for index, ex in enumerate(examples):
        q_ids = questions[index].ids
        if len(q_ids) > max_query_length:
            q_ids = q_ids[:max_query_length]
            counts["questions_truncated"] += 1
        enc = context_encodings[ex.context]
        c_ids, c_offsets = enc.ids, enc.offsets

        # The answer as context token indices [tok_start, tok_end], or None.
        answer = None
        if ex.is_impossible:
            counts["impossible"] += 1
        elif ex.answers or training:   # (neither answers nor is_impossible: unlabelled, fine for prediction)
            first = ex.answers[0] if ex.answers else QAAnswer("", 0)
            located = locate_answer(ex.context, first.text, first.start)
            if located is not None:
                char_start, relocated = located
                answer = _answer_tokens(c_offsets, char_start, char_start + len(first.text))
            if answer is None:
                counts["answer_not_in_context"] += 1
                if training:
                    continue
            elif relocated:
                counts["answer_relocated"] += 1

        prefix = [cls, *q_ids, sep]
        window = max_seq_length - len(prefix) - 1
        step = min(doc_stride, window)
        a = 0
        while True:
            b = min(a + window, len(c_ids))
            input_ids = prefix + c_ids[a:b] + [sep]
            feats.input_ids.append(input_ids)
            feats.token_type_ids.append([0] * len(prefix) + [1] * (b - a + 1))
            feats.example_index.append(index)
            feats.offsets.append([None] * len(prefix) + list(c_offsets[a:b]) + [None])
            start = end = 0
            if answer is not None and a <= answer[0] and answer[1] < b:
                start, end = answer[0] - a + len(prefix), answer[1] - a + len(prefix)
            elif training:
                counts["windows_without_answer"] += 1
            feats.start_positions.append(start)
            feats.end_positions.append(end)
            if b >= len(c_ids):
                break
            a += step
    counts["windows"] = len(feats)
    return feats, counts


# --------------------------------------------------------------------------- decoding answers

def _softmax(scores: list[float]) -> list[float]:
    if not scores:
        return []
    x = np.asarray(scores, dtype=np.float64)
    x = np.exp(x - x.max())
    return (x / x.sum()).tolist()


def postprocess_qa(examples: Sequence[QAExample], features: QAFeatures, start_logits, end_logits, *,
                   n_best_size: int = 20, max_answer_length: int = 30, version_2: bool = False,
                   null_score_diff_threshold: float = 0.0
                   ) -> tuple[dict[str, str], dict[str, list[dict]], dict[str, float]]:
    """Turn per-token start/end logits into answer text for every example.

    ``start_logits``/``end_logits``: [F, >=L] arrays or lists, one row per feature (positions past a
    feature's length are padding and ignored). A span (s, e) of one window is a candidate when both
    tokens are context tokens, s <= e and e - s + 1 <= max_answer_length; its score is
    start[s] + end[e]. The same character span found in overlapping windows keeps its best score.

    Returns ``(predictions, n_best, null_diff)`` keyed by qid:
      predictions: the best span's text cut from the original context by character offsets; with
        ``version_2``, "" when ``null_diff > null_score_diff_threshold``. "" when there is no candidate.
      n_best: up to ``n_best_size`` dicts {text, start_char, end_char, score, probability}, best first,
        probability a softmax over the listed scores; with ``version_2`` the null answer
        {"text": "", start_char 0, end_char 0, score null} is listed too.
      null_diff: score_null - best_non_null, where score_null is the minimum over the example's
        windows of start[CLS] + end[CLS] (inf when there is no candidate).
    """
    if len(start_logits) != len(features) or len(end_logits) != len(features):
        raise ValueError(f"{len(features)} features but {len(start_logits)} start and "
                         f"{len(end_logits)} end logit rows; give one row per feature")
    by_example: dict[int, list[int]] = {}
    for f, index in enumerate(features.example_index):
        by_example.setdefault(index, []).append(f)

    predictions: dict[str, str] = {}
    n_best: dict[str, list[dict]] = {}
    null_diff: dict[str, float] = {}
    for index, ex in enumerate(examples):
        best: dict[tuple[int, int], float] = {}   # (start_char, end_char) -> best score over windows
        score_null = math.inf
        for f in by_example.get(index, []):
            length, offsets = len(features.input_ids[f]), features.offsets[f]
            starts = np.asarray(start_logits[f], dtype=np.float64)[:length]
            ends = np.asarray(end_logits[f], dtype=np.float64)[:length]
            if len(starts) < length or len(ends) < length:
                raise ValueError(f"feature {f} has {length} tokens but only {min(len(starts), len(ends))} logits")
            score_null = min(score_null, float(starts[0] + ends[0]))
            context = np.array([i for i, o in enumerate(offsets) if o is not None], dtype=np.int64)
            if len(context) == 0:
                continue
            # The n_best_size best starts and ends among context tokens, then every valid pairing.
            top_s = context[np.argsort(-starts[context], kind="stable")[:n_best_size]]
            top_e = context[np.argsort(-ends[context], kind="stable")[:n_best_size]]
            for s in top_s.tolist():
                for e in top_e.tolist():
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    span = (offsets[s][0], offsets[e][1])
                    score = float(starts[s] + ends[e])
                    if score > best.get(span, -math.inf):
                        best[span] = score
        ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:n_best_size]
        entries = [dict(text=ex.context[s:e], start_char=s, end_char=e, score=score) for (s, e), score in ranked]
        best_non_null = entries[0]["score"] if entries else -math.inf
        if not math.isfinite(score_null):
            score_null = 0.0   # no window at all (cannot happen for featurize_qa's output in evaluation)
        if version_2:
            entries.append(dict(text="", start_char=0, end_char=0, score=score_null))
            entries.sort(key=lambda entry: -entry["score"])
        for entry, p in zip(entries, _softmax([entry["score"] for entry in entries])):
            entry["probability"] = p
        diff = score_null - best_non_null
        text = ex.context[ranked[0][0][0]:ranked[0][0][1]] if ranked else ""
        if version_2 and diff > null_score_diff_threshold:
            text = ""
        predictions[ex.qid] = text
        n_best[ex.qid] = entries
        null_diff[ex.qid] = diff
    return predictions, n_best, null_diff
