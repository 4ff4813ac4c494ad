"""Text corpus -> packed pre-training examples in token shards (what ``electra data build`` runs).

Corpus formats: ``.txt`` / ``.txt.gz`` with one sentence or paragraph per line and a blank line
between documents (the BERT/ELECTRA format), and ``.jsonl`` / ``.jsonl.gz`` with one
``{"text": ...}`` document per line. Everything streams: memory stays bounded whatever the
corpus size or the length of a line (a long line reaches the tokenizer in pieces of at most
``sources.PIECE_CHARS`` characters, packed as consecutive sentences), packing is linear in the
number of tokens, and the output folder appears only once complete. Every file is written through
``electra.runtime.files``: on a full disk the build stops with one line and leaves nothing behind.

Output (read by ``electra.data.loader``)::

    out/manifest.json                       sizes, special ids, shard list (see build_dataset)
    out/train-00000.ids.npy                 [n, L] uint16 (int32 for vocabularies over 65535), padded with [PAD]
    out/train-00000.types.npy               [n, L] uint8 token types
    out/train-00000.starts.npy              [n, ceil(L/8)] uint8, bit-packed: which tokens begin a word
                                            (only with --word-segmenter; electra/data/segment.py)
    out/valid-00000.{ids,types}.npy         held-out documents, same layout
    out/tokenizer/                          the tokenizer, so the folder is self-contained
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from electra.data.segment import load_segmenter, segmenter_version, word_start_flags
from electra.data.sources import CorpusReader, find_corpus_files
from electra.data.tokenizer import (atomic_output_dir, load_tokenizer, refuse_non_empty, save_tokenizer,
                                    special_token_ids)
from electra.errors import UserError
from electra.runtime.files import atomic_file, write_text

FORMAT, VERSION = "electra-pretraining-data", 1
# The longest examples `data build` makes. ELECTRA uses 128 and 512; 8192 is the longest context of today's
# full-attention encoders (ModernBERT), and attention memory grows with its square (at 8192 tokens one layer's
# scores for one head and example take 256 MiB), so a longer length is a mistake: 100000000 asked numpy for
# terabytes and ended in a MemoryError. A model must also have max_position_embeddings >= the length (512 by
# default; pretrain checks it).
MAX_SEQ_LENGTH = 8192
# The most token positions a shard buffer holds in memory (ids, types, and word starts with a segmenter):
# shard_examples rows, fewer when the examples are long (65536 rows up to 1024 tokens).
SHARD_BUFFER_TOKENS = 1 << 26


Example = tuple[list, list[int]]  # (input_ids, token_type_ids); ids are (id, begins_word) pairs with a segmenter


class ExampleBuilder:
    """Packs sentences into ``[CLS] A [SEP] B [SEP]`` examples, as Google's ELECTRA ExampleBuilder does.

    Sentences accumulate until they reach the target length (``max_seq_length``, or 5% of the time
    a random length in [5, max_seq_length]); they then become one example, a single segment 10% of
    the time and otherwise split between A and B near the middle. Unlike Google's code nothing is
    ever dropped: tokens beyond ``max_seq_length`` (a long sentence, or the end of the one that
    crossed the target) are carried into the next example, and a document's end flushes the rest.
    Token order is preserved exactly (Google's builder can move a short sentence from B back to A).
    The builder never looks inside a token: with a word segmenter each is an (id, begins_word) pair.
    """

    def __init__(self, max_seq_length: int, cls_id: int, sep_id: int, rng: random.Random):
        if max_seq_length < 5:
            raise ValueError(f"max_seq_length must be at least 5, got {max_seq_length}")
        self.max_len, self.cls_id, self.sep_id, self.rng = max_seq_length, cls_id, sep_id, rng
        self._pending: list[list[int]] = []  # sentences not yet (wholly) in an example
        self._offset = 0  # how many tokens of _pending[0] are already in examples
        self._pending_len = 0  # tokens not yet in an example
        self._target = max_seq_length

    def add_sentence(self, ids: list[int]) -> list[Example]:
        """Add one sentence's token ids (no specials); returns the examples it completes (often none)."""
        if not ids:
            return []
        self._pending.append(ids)
        self._pending_len += len(ids)
        examples = []
        while self._pending_len >= self._target:
            examples.append(self._create_example())
        return examples

    def end_document(self) -> list[Example]:
        """Flush what is left of the current document (examples never span documents)."""
        examples = []
        while self._pending_len:
            examples.append(self._create_example())
        return examples

    def _create_example(self) -> Example:
        rng = self.rng
        single = rng.random() < 0.1  # like a classification input: one segment
        capacity = self.max_len - (2 if single else 3)  # room left by [CLS] A [SEP] (B [SEP])
        a_target = (self._target - 3) // 2  # A's share of a two-segment example
        pieces = self._take(capacity)
        first: list[int] = []
        second: list[int] = []
        for piece in pieces:
            # Google's rule: a sentence goes to A if A is empty, if it keeps A under its target, or
            # (50%) if it is the one that crosses the target. Once B has begun, everything goes to B.
            if single or (not second and (not first or len(first) + len(piece) < a_target
                                          or (len(first) < a_target and rng.random() < 0.5))):
                first += piece
            else:
                second += piece
        if not single and not second and len(first) > a_target:
            # A swallowed everything (one long sentence, or the crossing one). Google keeps that as a
            # single segment, which for paragraph-per-line corpora means almost no B segments; split
            # at the last sentence boundary instead, or at A's target inside a lone long sentence.
            cut = len(first) - len(pieces[-1]) if len(pieces) > 1 else a_target
            first, second = first[:cut], first[cut:]
        # Small chance of a shorter target for the next example, so the model sees short inputs too.
        self._target = rng.randint(5, self.max_len) if rng.random() < 0.05 else self.max_len
        ids = [self.cls_id, *first, self.sep_id]
        types = [0] * len(ids)
        if second:
            ids += second
            ids.append(self.sep_id)
            types += [1] * (len(second) + 1)
        return ids, types

    def _take(self, capacity: int) -> list[list[int]]:
        """Remove up to ``capacity`` tokens from the front of the pending sentences, splitting the last one.

        The unused tail of a split sentence stays where it is, behind ``_offset``: copying it for every example
        made packing quadratic in a sentence's length."""
        pending, taken, room, i, offset = self._pending, [], capacity, 0, self._offset
        while i < len(pending) and room > 0:
            sentence = pending[i]
            left = len(sentence) - offset
            if left <= room:
                taken.append(sentence[offset:] if offset else sentence)
                room -= left
                i += 1
                offset = 0
            else:
                taken.append(sentence[offset:offset + room])
                offset += room  # the overflow opens the next example
                room = 0
        del pending[:i]
        self._offset = offset
        self._pending_len -= capacity - room
        return taken


def pack_examples(documents_token_ids: Iterable[Iterable[list[int]]], max_seq_length: int, cls_id: int,
                  sep_id: int, rng: random.Random) -> Iterator[Example]:
    """Pack documents (lists of sentences, each a list of token ids without specials) into examples.

    Yields ``(input_ids, token_type_ids)``: ``[CLS] A [SEP] B [SEP]`` with types 0 on ``[CLS] A [SEP]``
    and 1 on ``B [SEP]``, or ``[CLS] A [SEP]`` alone. Every token of every sentence appears exactly
    once, in order; no example is longer than ``max_seq_length``. See ``ExampleBuilder``.
    """
    builder = ExampleBuilder(max_seq_length, cls_id, sep_id, rng)
    for document in documents_token_ids:
        for sentence in document:
            yield from builder.add_sentence(sentence)
        yield from builder.end_document()


class _ShardWriter:
    """Fills fixed-size [shard_examples, L] arrays and saves each when full as SPLIT-NNNNN.{ids,types}.npy
    (and SPLIT-NNNNN.starts.npy with ``word_starts``: examples whose ids are (id, begins_word) pairs)."""

    def __init__(self, folder: Path, split: str, max_len: int, dtype, pad_id: int, shard_examples: int,
                 word_starts: bool = False):
        self.folder, self.split, self.max_len, self.dtype, self.pad_id = folder, split, max_len, dtype, pad_id
        self.shard_examples, self.word_starts = shard_examples, word_starts
        self.ids: np.ndarray | None = None  # allocated on first use: a split may stay empty
        self.types: np.ndarray | None = None
        self.starts: np.ndarray | None = None
        self.rows = 0
        self.shards: list[dict] = []
        self.num_examples = 0
        self.num_tokens = 0

    def add(self, example: Example) -> None:
        ids, types = example
        if self.ids is None:
            self.ids = np.full((self.shard_examples, self.max_len), self.pad_id, dtype=self.dtype)
            self.types = np.zeros((self.shard_examples, self.max_len), dtype=np.uint8)
            self.starts = np.zeros((self.shard_examples, self.max_len), dtype=bool) if self.word_starts else None
        if self.word_starts:
            ids, starts = zip(*ids)
            self.starts[self.rows, :len(starts)] = starts
        self.ids[self.rows, :len(ids)] = ids
        self.types[self.rows, :len(types)] = types
        self.rows += 1
        self.num_tokens += len(ids)
        if self.rows == self.shard_examples:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        name = f"{self.split}-{len(self.shards):05d}"
        _save_array(self.folder / f"{name}.ids.npy", self.ids[:self.rows])
        _save_array(self.folder / f"{name}.types.npy", self.types[:self.rows])
        shard = {"input_ids": f"{name}.ids.npy", "token_type_ids": f"{name}.types.npy", "num_examples": self.rows}
        if self.word_starts:
            _save_array(self.folder / f"{name}.starts.npy", np.packbits(self.starts[:self.rows], axis=1))
            shard["word_starts"] = f"{name}.starts.npy"
            self.starts.fill(False)
        self.shards.append(shard)
        self.num_examples += self.rows
        self.rows = 0
        self.ids.fill(self.pad_id)
        self.types.fill(0)

    def summary(self) -> dict:
        return {"num_examples": self.num_examples, "num_tokens": self.num_tokens, "shards": self.shards}


def _save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` through runtime/files.py: the whole file or, on a full disk, none of it and one line."""
    with atomic_file(path) as f:
        np.save(f, array)


def is_held_out(doc_index: int, seed: int, valid_fraction: float) -> bool:
    """Whether document ``doc_index`` (0-based over the whole corpus) goes to the validation split.

    A hash of (seed, index) picks about ``valid_fraction`` of documents. Document 0 always trains
    and document 1 is always held out, so both splits are non-empty once there are two documents.
    """
    if valid_fraction <= 0 or doc_index == 0:
        return False
    if doc_index == 1:
        return True
    digest = hashlib.blake2b(f"{seed}:{doc_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") < valid_fraction * 2**64


def _batches(reader: CorpusReader, max_lines: int = 4096, max_chars: int = 1 << 20) -> Iterator[list[str | None]]:
    """The reader's stream (sentences and ``None`` document ends) in bounded chunks for batch tokenising."""
    batch: list[str | None] = []
    lines = chars = 0
    for item in reader:
        batch.append(item)
        if item is not None:
            lines += 1
            chars += len(item)
        if lines >= max_lines or chars >= max_chars:
            yield batch
            batch, lines, chars = [], 0, 0
    if batch:
        yield batch


def build_dataset(inputs: list, tokenizer: str | Path, out_dir: str | Path, *, max_seq_length: int = 128,
                  valid_fraction: float = 0.01, seed: int = 12345, shard_examples: int = 65536,
                  progress: bool = True, word_segmenter: str | None = None, text_column: str = "text") -> dict:
    """Tokenise a corpus, pack it into pre-training examples, and write a data folder; returns its manifest.

    ``inputs``: corpus files or folders (``find_corpus_files``; ``text_column``: the text of JSONL records and
    table rows). ``tokenizer``: anything ``load_tokenizer`` accepts. About
    ``valid_fraction`` of whole documents (chosen by a hash of index and seed) are held out.
    ``out_dir`` must be new or empty; it is built beside itself and renamed into place at the end.
    ``max_seq_length``: 5 to MAX_SEQ_LENGTH. A shard holds at most ``shard_examples`` examples (fewer when they are
    longer than 1024 tokens: SHARD_BUFFER_TOKENS bounds the memory of a shard being filled).
    A split's ``num_tokens`` counts every non-padding position, [CLS] and [SEP] included.
    ``word_segmenter`` (segment.WORD_SEGMENTERS): also store which tokens begin a word, for whole-word masking
    in languages that WordPiece's ``##`` cannot segment (Chinese).
    """
    out_dir = Path(out_dir)
    refuse_non_empty(out_dir)
    if max_seq_length < 5:
        raise UserError(f"max_seq_length {max_seq_length} is too short; give at least 5 (ELECTRA uses 128 or 512)")
    if max_seq_length > MAX_SEQ_LENGTH:
        raise UserError(f"max_seq_length {max_seq_length} is too long; give at most {MAX_SEQ_LENGTH} (ELECTRA uses "
                        f"128 or 512; attention memory grows with the square of the length)")
    if not 0 <= valid_fraction < 1:
        raise UserError(f"valid_fraction {valid_fraction} must be at least 0 and below 1 (e.g. 0.01)")
    if shard_examples < 1:
        raise UserError(f"shard_examples {shard_examples} must be positive")
    segment = load_segmenter(word_segmenter) if word_segmenter else None
    tok = load_tokenizer(tokenizer)
    # Text that spells a special token ("[SEP]", "[PAD]", "[MASK]") is text, as in Google's builder: read as the
    # special it would put a separator, a mask, or padding (which the loader then masks out) inside an example.
    tok.encode_special_tokens = True
    files = find_corpus_files(inputs)
    special = special_token_ids(tok)
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    dtype = np.uint16 if vocab_size <= 65535 else np.int32
    reader = CorpusReader(files, text_column)

    with atomic_output_dir(out_dir) as tmp:
        rows = min(shard_examples, max(1, SHARD_BUFFER_TOKENS // max_seq_length))
        writers = {s: _ShardWriter(tmp, s, max_seq_length, dtype, special["pad"], rows, segment is not None)
                   for s in ("train", "valid")}
        # One builder per split, each with its own random stream (a target length must not leak
        # from a training document into a held-out one).
        # With a segmenter a token is an (id, begins_word) pair, which the builder packs like an id.
        cls, sep = ((special["cls"], False), (special["sep"], False)) if segment else (special["cls"], special["sep"])
        builders = {s: ExampleBuilder(max_seq_length, cls, sep, random.Random(seed * 2 + i))
                    for i, s in enumerate(("train", "valid"))}
        with tqdm(total=reader.total_bytes, unit="B", unit_scale=True, desc="tokenizing and packing",
                  disable=not progress) as bar:
            doc_index, split = -1, None
            for batch in _batches(reader):
                lines = [x for x in batch if x is not None]
                encodings = tok.encode_batch(lines, add_special_tokens=False)
                if segment:
                    tokens = [list(zip(e.ids, word_start_flags(e.offsets, segment(line))))
                              for e, line in zip(encodings, lines)]
                else:
                    tokens = [e.ids for e in encodings]
                next_tokens = iter(tokens).__next__
                for item in batch:
                    if item is None:  # end of document
                        for example in builders[split].end_document():
                            writers[split].add(example)
                        split = None
                        continue
                    if split is None:  # first sentence of a new document
                        doc_index += 1
                        split = "valid" if is_held_out(doc_index, seed, valid_fraction) else "train"
                    for example in builders[split].add_sentence(next_tokens()):
                        writers[split].add(example)
                bar.update(reader.bytes_read() - bar.n)
        if writers["train"].num_tokens == 0 and writers["valid"].num_tokens == 0:
            raise UserError(f"{' '.join(map(str, files))}: the corpus has no text to tokenize; give files with "
                            "at least one non-empty line")
        for writer in writers.values():
            writer.flush()
        save_tokenizer(tok, tmp / "tokenizer")
        manifest = {
            "format": FORMAT, "version": VERSION, "max_seq_length": max_seq_length, "vocab_size": vocab_size,
            "special_ids": special, "seed": seed,
            **({"word_segmenter": segmenter_version(word_segmenter)} if segment else {}),
            "splits": {s: w.summary() for s, w in writers.items()},
            "source": {"files": [str(f) for f in files], "num_documents": reader.num_documents,
                       "num_lines": reader.num_lines, "num_bytes": reader.total_bytes},
        }
        write_text(tmp / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
