"""Whole-word and span (SpanBERT) selection of the tokens to predict (``train.masking``).

Both keep the contract of ``select_positions`` (batches.py): a pure function of (seed, example key,
position), so an example is masked the same way whatever its batch or the resume point, and a
static output, positions (B, P) with a ``valid`` mask, P = ``max_selected(T, mask_prob)``. Each row
selects at most k = round(mask_prob · n) of its n candidate tokens (the uniform count), in whole words:

- a *word* is a candidate token that is not a WordPiece continuation piece (``##...``), plus the
  continuation pieces that follow it; where the data stores word starts (``data build --word-segmenter``,
  for Chinese) a word runs from one stored start to the next; without either every token is a word;
- ``whole_word``: words in a random order (a keyed draw per word), each taken if it still fits within
  k tokens, else skipped (Google's BERT: whole words only, never beyond the budget);
- ``span``: SpanBERT's spans, of a length in words drawn from Geometric(p) truncated to [1, span_max]
  (mean 3.8 words for p = 0.2, max 10), placed uniformly at random among the row's words, never
  overlapping or touching (so every masked run is one span); spans are added in the order drawn until
  the next would pass k tokens, and that one is cut to the whole words that fit (as SpanBERT cuts the
  last span at the budget).

If the first word (or span's first word) alone is longer than k it is still taken when it fits in P,
so no row with a candidate goes without a prediction.

Shapes: B batch, T length, P slots, S = P spans at most (each holds at least one token).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from electra.pretraining.batches import (SALT_SPAN_LENGTH, SALT_SPAN_SLOT, SALT_WORD, Selector, fold64, keyed_uniform,
                                         max_selected)


_WHOLE_WORD_PASSES = 3  # after 3 passes the shortfall is almost always 0 (see whole_word_positions)


def continuation_flags(tokenizer_dir: Path, vocab_size: int) -> torch.Tensor | None:
    """(V,) bool, True for the ids of WordPiece continuation pieces (``##...``); None without a tokenizer."""
    from electra.data.tokenizer import load_tokenizer  # the Rust tokenizers library, only when needed

    tokenizer_dir = Path(tokenizer_dir)
    if not tokenizer_dir.is_dir():
        return None
    flags = torch.zeros(vocab_size, dtype=torch.bool)
    for token, i in load_tokenizer(tokenizer_dir).get_vocab().items():
        if i < vocab_size and token.startswith("##") and len(token) > 2:
            flags[i] = True
    return flags


def word_starts(input_ids: torch.Tensor, candidates: torch.Tensor, continuation: torch.Tensor | None,
                stored: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T) bool: candidates that begin a word, or the first candidate after a non-candidate.

    A token begins a word where the data says so (``stored`` (B, T) bool, from a word segmenter), else where
    it is not a ``##`` piece (``continuation``, (V,) bool); with neither, every token is a word.
    """
    if stored is None and continuation is None:
        return candidates
    begins = stored if stored is not None else ~continuation[input_ids]  # (B, T)
    prev = F.pad(candidates[:, :-1], (1, 0), value=False)
    return candidates & (begins | ~prev)


def _budget(candidates: torch.Tensor, mask_prob: float) -> torch.Tensor:
    """k per row (B,): round(mask_prob · n), at least 1, at most n: the count of ``select_positions``."""
    n = candidates.sum(1)
    return torch.minimum(torch.clamp((n.to(torch.float32) * mask_prob).round().long(), min=1), n)


def _positions(selected: torch.Tensor, P: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) bool with at most P per row -> positions (B, P) (selected first, in order) and valid (B, P)."""
    order = torch.argsort((~selected).to(torch.int8), dim=1, stable=True)[:, :P]  # a permutation: distinct slots
    valid = torch.arange(P, device=selected.device)[None, :] < selected.sum(1, keepdim=True)
    return order, valid


def whole_word_positions(candidates: torch.Tensor, starts: torch.Tensor, mask_prob: float, keys: torch.Tensor,
                         seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-word masking: random words until the next would pass k tokens. Returns positions, valid (B, P)."""
    B, T = candidates.shape
    P = max_selected(T, mask_prob)
    pos = torch.arange(T, device=candidates.device)
    k = _budget(candidates, mask_prob)
    start_of = torch.cummax(torch.where(starts, pos, 0), dim=1).values  # (B, T) first token of each token's word
    length = torch.zeros_like(start_of).scatter_add(1, start_of, candidates.long())  # (B, T) word length at its start
    u = keyed_uniform(seed, SALT_WORD, fold64(keys)[:, None], pos[None, :])  # one draw per word start
    order = torch.where(starts, u, torch.full_like(u, 2.0)).argsort(dim=1)  # (B, T) word starts in random order
    is_start = starts.gather(1, order)
    length_sorted = length.gather(1, order) * is_start  # (B, T)
    remaining = torch.maximum(k, torch.clamp(length_sorted[:, 0], max=P))  # the first word always, if it fits in P
    # Google's rule, walk the shuffled words and skip any that would pass the budget, in a few vectorised
    # passes: each takes, in order, the untaken words no longer than what remains while the sum still fits.
    take = torch.zeros_like(is_start)
    for _ in range(_WHOLE_WORD_PASSES):
        fits = is_start & ~take & (length_sorted <= remaining[:, None])
        fit_len = length_sorted * fits
        new = fits & (fit_len.cumsum(1) <= remaining[:, None])
        take |= new
        remaining = remaining - (fit_len * new).sum(1)
    chosen = torch.zeros_like(starts).scatter(1, order, take)  # (B, T) at word starts
    return _positions(candidates & chosen.gather(1, start_of), P)


def span_lengths(u: torch.Tensor, p: float, max_len: int) -> torch.Tensor:
    """Geometric(p) on {1, ..., max_len}, renormalised (SpanBERT), by inverting its CDF at ``u``.

    P(L <= l) = (1 - q^l) / (1 - q^max_len), q = 1 - p. Returns int64 of ``u``'s shape.
    """
    if p >= 1:
        return torch.ones_like(u, dtype=torch.long)
    q = 1.0 - p
    x = 1.0 - u.double() * (1.0 - q ** max_len)  # in (q^max_len, 1)
    return torch.ceil(torch.log(x) / math.log(q)).long().clamp_(1, max_len)


def span_positions(candidates: torch.Tensor, starts: torch.Tensor, mask_prob: float, keys: torch.Tensor, seed: int,
                   p: float, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SpanBERT span masking (see the module docstring). Returns positions, valid (B, P)."""
    B, T = candidates.shape
    P = max_selected(T, mask_prob)
    S = P
    dev = candidates.device
    pos, span_idx = torch.arange(T, device=dev), torch.arange(S, device=dev)
    key = fold64(keys)[:, None]
    k = _budget(candidates, mask_prob)  # (B,) token budget
    W = starts.sum(1)  # (B,) words

    # Words: index of each token's word, each word's token count and first token, in word order (B, T).
    word = (starts.cumsum(1) - 1).clamp(min=0)
    word_len = torch.zeros(B, T, dtype=torch.long, device=dev).scatter_add(1, word, candidates.long())
    cum_len = F.pad(word_len.cumsum(1), (1, 0))  # (B, T + 1): tokens in words before w

    # Span lengths in words, in the order drawn (B, S); enough spans to cover k words (>= k tokens).
    length = span_lengths(keyed_uniform(seed, SALT_SPAN_LENGTH, key, span_idx[None, :]), p, max_len)
    cum = length.cumsum(1)
    m = torch.where(k > 0, (cum < k[:, None]).sum(1) + 1, 0)
    # ... but only as many as fit in W words with a gap between neighbours; a lone span too long is cut to W.
    m = torch.minimum(m, (cum + span_idx[None, :] <= W[:, None]).sum(1))
    cut_first = (m == 0) & (k > 0)
    length[:, 0] = torch.where(cut_first, W, length[:, 0])
    m = torch.where(cut_first, 1, m)
    active = span_idx[None, :] < m[:, None]  # (B, S)
    length = length * active

    # Place m non-touching spans uniformly: m of F + m items are spans, the rest free words (stars and
    # bars); a random order of the items gives each drawn span its item, c (B, S).
    free = W - length.sum(1) - (m - 1).clamp(min=0)  # (B,) >= 0
    u = keyed_uniform(seed, SALT_SPAN_SLOT, key, pos[None, :])  # (B, T) one draw per item
    c = torch.where(pos[None, :] < (free + m)[:, None], u, torch.full_like(u, 2.0)).argsort(dim=1)[:, :S]
    before = (c[:, None, :] < c[:, :, None]) & active[:, None, :]  # (B, S, S): span j lies left of span i
    first = c + (before * length[:, None, :]).sum(-1)  # (B, S) first word of each span
    first = torch.where(active, first, 0)
    end = torch.where(active, first + length, 0)

    # Tokens: spans in the order drawn until the budget; the span that crosses it keeps its leading words.
    span_tokens = cum_len.gather(1, end) - cum_len.gather(1, first)  # (B, S), 0 when inactive
    tokens_before = span_tokens.cumsum(1) - span_tokens  # (B, S)
    first_word_tokens = word_len.gather(1, first[:, :1]).squeeze(1) * active[:, 0]
    budget = torch.maximum(k, torch.clamp(first_word_tokens, max=P))
    # Which span covers each word: +id at its first word, -id after its last (spans never overlap).
    ids = (span_idx[None, :] + 1) * active
    marks = torch.zeros(B, T + 1, dtype=torch.long, device=dev)
    marks.scatter_add_(1, first, ids).scatter_add_(1, end, -ids)
    span_of_word = marks.cumsum(1)[:, :T] - 1  # (B, T) by word index; -1: no span
    sw = span_of_word.clamp(min=0)
    within = cum_len[:, 1:] - cum_len.gather(1, first.gather(1, sw))  # tokens of the span up to the end of word w
    word_taken = (span_of_word >= 0) & (tokens_before.gather(1, sw) + within <= budget[:, None])  # (B, T)
    return _positions(candidates & word_taken.gather(1, word), P)


def make_selector(masking: str, mask_prob: float, continuation: torch.Tensor | None = None, span_p: float = 0.2,
                  span_max: int = 10) -> Selector | None:
    """The ``select`` argument of ``mask_batch`` for ``train.masking``; None for uniform (the default path).

    ``continuation``: ``continuation_flags`` on the batch's device (required for whole_word; span falls
    back to token spans without it). A batch's stored word starts (``word_starts``), where the data has them,
    take their place.
    """
    if masking == "uniform":
        return None
    if masking == "whole_word":
        if continuation is None:
            raise ValueError("whole-word masking needs the continuation flags of a WordPiece vocabulary")
        return lambda candidates, input_ids, keys, seed, stored=None: whole_word_positions(
            candidates, word_starts(input_ids, candidates, continuation, stored), mask_prob, keys, seed)
    if masking == "span":
        return lambda candidates, input_ids, keys, seed, stored=None: span_positions(
            candidates, word_starts(input_ids, candidates, continuation, stored), mask_prob, keys, seed, span_p,
            span_max)
    raise ValueError(f"unknown masking {masking!r}")
