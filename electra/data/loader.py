"""Read the token shards that ``electra data build`` writes: a data folder's manifest and memory-mapped shards
(``PretrainingData``), rows as tensors (``to_batch``), the held-out slice every evaluation reads, and the data's
token distributions. Pre-training's training stream over these rows, shuffled and keyed by stream position, is
pretraining/batches.py's ``BatchStream``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from electra.errors import UserError

FORMAT = "electra-pretraining-data"
# Evaluation examples get keys far beyond any training stream position, so their masks never
# coincide with a training example's.
EVAL_KEY_OFFSET = 1 << 48
UNIGRAM_SAMPLE_EXAMPLES = 20_000  # training examples, evenly spread, that the unigram counts come from


class PretrainingData:
    """The manifest and memory-mapped shards of one data folder."""

    def __init__(self, data_dir: str | Path):
        self.dir = Path(data_dir)
        path = self.dir / "manifest.json"
        if not path.is_file():
            raise UserError(f"{self.dir}: no manifest.json; build the data with `electra data build ... --out {self.dir}`")
        try:
            self.manifest = json.loads(path.read_text())
            if self.manifest.get("format") != FORMAT:
                raise ValueError("not an electra data folder")
            self.max_seq_length = int(self.manifest["max_seq_length"])
            self.vocab_size = int(self.manifest["vocab_size"])
            self.special_ids = {k: int(v) for k, v in self.manifest["special_ids"].items()}
            self._splits = {name: self._open_split(name, split) for name, split in self.manifest["splits"].items()}
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise UserError(f"{path}: unreadable data manifest or shard ({e}); rebuild with `electra data build`") from None
        if self.num_examples("train") == 0:
            raise UserError(f"{path}: the training split is empty; give `electra data build` more text")

    def _open_split(self, name: str, split: dict) -> tuple[list[tuple], np.ndarray]:
        shards = []
        for shard in split["shards"]:
            ids = np.load(self.dir / shard["input_ids"], mmap_mode="r")
            types = np.load(self.dir / shard["token_type_ids"], mmap_mode="r")
            if ids.shape != types.shape or ids.shape[1] != self.max_seq_length or ids.shape[0] != shard["num_examples"]:
                raise ValueError(f"shard {shard['input_ids']} has shape {ids.shape}")
            starts = None
            if "word_starts" in shard:  # bit-packed (n, ceil(L / 8)): data build --word-segmenter
                starts = np.load(self.dir / shard["word_starts"], mmap_mode="r")
                if starts.shape != (ids.shape[0], -(-self.max_seq_length // 8)):
                    raise ValueError(f"shard {shard['word_starts']} has shape {starts.shape}")
            shards.append((ids, types, starts))
        if len({s[2] is None for s in shards}) > 1:
            raise ValueError(f"only some {name} shards have word starts")
        offsets = np.cumsum([0] + [s[0].shape[0] for s in shards])
        return shards, offsets

    @property
    def tokenizer_dir(self) -> Path:
        return self.dir / "tokenizer"

    @property
    def has_word_starts(self) -> bool:
        """Whether the shards say which tokens begin a word (``data build --word-segmenter``)."""
        return "word_segmenter" in self.manifest

    def num_examples(self, split: str) -> int:
        return int(self._splits[split][1][-1]) if split in self._splits else 0

    def examples(self, split: str, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``indices`` of a split: input_ids and token_type_ids, each (n, L) int64."""
        return self._rows(split, indices, 0, np.int64), self._rows(split, indices, 1, np.int64)

    def word_starts(self, split: str, indices: np.ndarray) -> np.ndarray | None:
        """(n, L) bool: which tokens of rows ``indices`` begin a word; None without stored word starts."""
        if not self.has_word_starts:
            return None
        packed = self._rows(split, indices, 2, np.uint8, width=-(-self.max_seq_length // 8))
        return np.unpackbits(packed, axis=1, count=self.max_seq_length).astype(bool)

    def _rows(self, split: str, indices: np.ndarray, field: int, dtype, width: int | None = None) -> np.ndarray:
        shards, offsets = self._splits[split]
        shard_of = np.searchsorted(offsets, indices, side="right") - 1
        out = np.empty((len(indices), width or self.max_seq_length), dtype=dtype)
        for s in np.unique(shard_of):
            rows = shard_of == s
            out[rows] = shards[s][field][indices[rows] - offsets[s]]
        return out


def to_batch(ids: np.ndarray, types: np.ndarray, keys: np.ndarray, pad_id: int,
             starts: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """numpy rows -> tensors, trimmed to the longest sequence (no compute on all-padding columns).
    ``starts`` (n, L) bool, which tokens begin a word, becomes ``word_starts`` when given."""
    attention = ids != pad_id
    length = max(1, int(attention.any(0).nonzero()[0].max()) + 1) if attention.any() else 1
    batch = {
        "input_ids": torch.from_numpy(ids[:, :length].copy()),
        "attention_mask": torch.from_numpy(attention[:, :length].astype(np.int64)),
        "token_type_ids": torch.from_numpy(types[:, :length].copy()),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
    }
    if starts is not None:
        batch["word_starts"] = torch.from_numpy(starts[:, :length].copy())
    return batch


def eval_batches(data: PretrainingData, num_examples: int, batch_size: int):
    """The first ``num_examples`` held-out examples (the same ones at every evaluation), in batches."""
    split = "valid" if data.num_examples("valid") else "train"
    n = min(num_examples, data.num_examples(split))
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        ids, types = data.examples(split, idx)
        yield to_batch(ids, types, idx + EVAL_KEY_OFFSET, data.special_ids["pad"], data.word_starts(split, idx))


# --------------------------------------------------------------------------- token distributions

def unigram_distribution(data: PretrainingData, special_ids: dict[str, int]) -> torch.Tensor:
    """(V,) float64 token frequencies of the training split (special tokens excluded), from up to
    UNIGRAM_SAMPLE_EXAMPLES examples spread evenly over it: the same for every run on the same data."""
    n = data.num_examples("train")
    idx = np.unique(np.linspace(0, n - 1, min(n, UNIGRAM_SAMPLE_EXAMPLES)).astype(np.int64))
    counts = np.zeros(data.vocab_size, dtype=np.float64)
    for start in range(0, len(idx), 4096):
        ids, _ = data.examples("train", idx[start:start + 4096])
        counts += np.bincount(ids.ravel(), minlength=data.vocab_size)[:data.vocab_size]
    counts[list(special_ids.values())] = 0
    return torch.from_numpy(counts / max(1.0, counts.sum()))


def uniform_distribution(vocab_size: int, special_ids: dict[str, int]) -> torch.Tensor:
    """(V,) every non-special id equally likely."""
    p = torch.ones(vocab_size, dtype=torch.float64)
    p[list(special_ids.values())] = 0
    return p / p.sum()


def token_distributions(data: PretrainingData) -> dict[str, torch.Tensor]:
    """Two (V,) float64 token distributions of a data folder: ``unigram`` (the training data's token
    frequencies) and ``uniform`` (every non-special id alike). The hybrid objective draws its replacements from
    one (``train.noise``); the held-out yardstick corrupts with both."""
    return {"unigram": unigram_distribution(data, data.special_ids),
            "uniform": uniform_distribution(data.vocab_size, data.special_ids)}
