"""Word boundaries for whole-word masking where WordPiece's ``##`` cannot find them (Chinese).

BERT tokenizes every CJK character as a token of its own, never a ``##`` piece, so ``masking=whole_word``
would mask single characters in Chinese. ``electra data build --word-segmenter NAME`` therefore stores, per
token, whether it begins a word (HFL's BERT-wwm did the same with LTP "reference files"):

- ``jieba``: jieba's default (accurate) mode, offline, MIT (``pip install -e ".[zh]"``);
- ``spaces``: the text is already segmented, words separated by spaces (the output of any segmenter you
  prefer, or a gold segmentation). BERT's tokenization drops the spaces between CJK characters, so the
  tokens are the same as for the unsegmented text.

A token begins a word when its first character does (``word_start_flags``): the ``##`` pieces of a Latin word
and the later characters of a Chinese word do not.
"""

from __future__ import annotations

import logging
from typing import Callable

from electra.errors import UserError

WORD_SEGMENTERS = ("jieba", "spaces")
# (line) -> the character offsets at which its words start
Segmenter = Callable[[str], set[int]]


def load_segmenter(name: str) -> Segmenter:
    if name == "spaces":
        return _space_word_starts
    if name == "jieba":
        try:
            import jieba
        except ImportError:
            raise UserError("--word-segmenter jieba needs the jieba package: pip install jieba "
                            "(or the toolkit's extra: pip install 'electra[zh]')") from None
        jieba.setLogLevel(logging.WARNING)  # not "Building prefix dict ..." on every build
        jieba.initialize()
        return lambda line: {start for _, start, _ in jieba.tokenize(line)}
    raise UserError(f"--word-segmenter {name!r} is not one of {', '.join(WORD_SEGMENTERS)}")


def segmenter_version(name: str) -> str:
    """What the manifest records about the segmenter (jieba's version: its dictionary decides the words)."""
    if name == "jieba":
        import jieba
        return f"jieba {getattr(jieba, '__version__', 'unknown')}"
    return name


def _space_word_starts(line: str) -> set[int]:
    return {i for i, c in enumerate(line) if not c.isspace() and (i == 0 or line[i - 1].isspace())}


def word_start_flags(offsets: list[tuple[int, int]], starts: set[int]) -> list[bool]:
    """Per token (its character ``offsets`` in the line), whether it begins a word."""
    return [begin in starts for begin, _ in offsets]
