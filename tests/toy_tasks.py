"""Learnable toy fine-tuning tasks (sentiment TSV, CoNLL tagging, SQuAD JSON) and a tiny random ELECTRA for them.

Shared by the fine-tuning tests. A size given as ``(lo, hi)`` is drawn per example with ``rng.randint``;
an int is fixed. The draws are made in one fixed order, so a seed always gives the same file.
"""

import json
import random
from pathlib import Path

import torch

from electra.config import ModelConfig
from electra.data.tokenizer import SPECIAL_TOKENS, load_tokenizer, save_tokenizer
from electra.interop.hf import save_hf_model
from electra.model import ElectraForPreTraining

GOOD = "great superb lovely fine brilliant".split()
BAD = "awful dull poor boring terrible".split()
FILLER = "the film was quite a story with some acting and music in it".split()
NOUNS = "dog cat house tree car river city".split()
VERBS = "runs eats sees builds drives finds takes".split()


def _size(rng: random.Random, size) -> int:
    return rng.randint(*size) if isinstance(size, tuple) else size


def sentence(rng: random.Random, label: int, filler=5) -> str:
    """``filler`` neutral words and one word of the label's polarity, shuffled."""
    words = rng.sample(FILLER, _size(rng, filler)) + [rng.choice(GOOD if label else BAD)]
    rng.shuffle(words)
    return " ".join(words)


def write_sst(path: Path, n: int, seed: int, filler=5, extra_label=None) -> Path:
    """SST-2 layout, labels alternating 0/1; ``extra_label`` appends one more row with that label."""
    rng = random.Random(seed)
    rows = ["sentence\tlabel"] + [f"{sentence(rng, i % 2, filler)}\t{i % 2}" for i in range(n)]
    if extra_label is not None:
        rows.append(f"{sentence(rng, 1, filler)}\t{extra_label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def write_conll(path: Path, n: int, seed: int, words=(2, 7)) -> Path:
    """Sentences alternating noun (NN) and verb (VB)."""
    rng = random.Random(seed)
    blocks = []
    for _ in range(n):
        pairs = [(rng.choice(NOUNS), "NN") if j % 2 == 0 else (rng.choice(VERBS), "VB") for j in range(_size(rng, words))]
        blocks.append("\n".join(f"{w}\t{t}" for w, t in pairs))
    path.write_text("\n\n".join(blocks) + "\n")
    return path


def write_squad(path: Path, n: int, seed: int, filler=6, broken=0) -> Path:
    """SQuAD v1.1: "... the answer is NOUN ..."; the first ``broken`` answers do not occur in their context."""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n):
        name = rng.choice(NOUNS)
        context = f"{' '.join(rng.sample(FILLER, _size(rng, filler)))} . the answer is {name} . {' '.join(rng.sample(FILLER, 4))}"
        answer = {"text": name, "answer_start": context.index(f"is {name}") + 3}
        if i < broken:
            answer = {"text": "zebra", "answer_start": 0}  # not in the context: skipped and counted
        paragraphs.append({"context": context, "qas": [{"id": f"q{i}", "question": "what is the answer ?",
                                                         "answers": [answer]}]})
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "toy", "paragraphs": paragraphs}]}))
    return path


def save_toy_model(d: Path, extra_words: list[str], max_position_embeddings: int) -> Path:
    """A tiny random ELECTRA discriminator (dropout 0) with a tokenizer trained on the toy words, saved as
    transformers saves it; returns that folder."""
    # A fixed vocabulary (every toy word whole, and its characters), not a trained one: tokenizers' WordPiece
    # trainer may number the same pieces differently from run to run, which changed the toy model's random
    # start from run to run and with it whether a toy task reached its bar.
    words = sorted({w.lower() for w in GOOD + BAD + FILLER + NOUNS + VERBS + extra_words})
    chars = sorted({c for w in words for c in w})
    vocab = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars), *(w for w in words if len(w) > 1)]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    save_tokenizer(load_tokenizer(d / "vocab.txt"), d / "tok")
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=load_tokenizer(d / "tok").get_vocab_size(), embedding_size=32, hidden_size=32,
                      num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      max_position_embeddings=max_position_embeddings, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)
    save_hf_model(ElectraForPreTraining(cfg), d / "hf", d / "tok")
    return d / "hf"
