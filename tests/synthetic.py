"""A small data folder in the `electra data build` layout, made without a corpus (fast tests)."""

import json
from pathlib import Path

import numpy as np

SPECIAL_IDS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}

# `--set` overrides for a pre-training run small enough for a test: a 2-layer, 32-wide tiny model, batch 8,
# a record every step, evaluation and checkpoints every 5 steps.
SMALL_RUN = ["model.hidden_size=32", "model.embedding_size=24", "model.num_hidden_layers=2",
             "model.intermediate_size=64", "train.batch_size=8", "train.log_every=1", "train.eval_every=5",
             "train.save_every=5", "train.eval_examples=16", "generator.hidden_fraction=0.5"]


def make_data_dir(path: Path, n_train: int = 96, n_valid: int = 16, length: int = 32, vocab: int = 120,
                  seed: int = 0) -> Path:
    """Examples of a learnable toy language (each token is followed by token+1 mostly), [CLS] A [SEP] B [SEP]."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    splits = {}
    for split, n in (("train", n_train), ("valid", n_valid)):
        ids = np.zeros((n, length), dtype=np.uint16)
        types = np.zeros((n, length), dtype=np.uint8)
        for i in range(n):
            real = int(rng.integers(length // 2, length + 1))
            start = int(rng.integers(5, vocab))
            body = [(start + j) % (vocab - 5) + 5 for j in range(real - 3)]
            cut = len(body) // 2
            row = [2] + body[:cut] + [3] + body[cut:] + [3]
            ids[i, :real] = row
            types[i, cut + 2:real] = 1
        np.save(path / f"{split}-00000.ids.npy", ids)
        np.save(path / f"{split}-00000.types.npy", types)
        splits[split] = {"num_examples": n, "num_tokens": int((ids != 0).sum()),
                         "shards": [{"input_ids": f"{split}-00000.ids.npy",
                                     "token_type_ids": f"{split}-00000.types.npy", "num_examples": n}]}
    manifest = {"format": "electra-pretraining-data", "version": 1, "max_seq_length": length, "vocab_size": vocab,
                "special_ids": SPECIAL_IDS, "seed": seed, "splits": splits,
                "source": {"files": [], "num_documents": 0, "num_lines": 0, "num_bytes": 0}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path
