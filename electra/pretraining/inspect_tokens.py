"""``electra inspect``: which tokens does a discriminator think were replaced?

A quick look at what pre-training learned: feed a sentence (perhaps with a word swapped for an
implausible one) and read the discriminator's per-token probability of "replaced".
"""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

import torch

from electra.data.tokenizer import load_tokenizer
from electra.errors import UserError
from electra.interop.hf import hf_pair_folders, load_hf_model
from electra.model import ElectraForPreTraining
from electra.pretraining.variants import merge_gdes_state
from electra.runtime.checkpoint import latest_checkpoint, load_run_config
from electra.runtime.files import load_safetensors, read_json_file


def load_discriminator(path: Path) -> tuple[ElectraForPreTraining, Path]:
    """The discriminator and its tokenizer folder, from a pre-training run, an export or a transformers folder."""
    path = Path(path)
    if (path / "config.json").is_file() and (path / "checkpoints").is_dir():
        cfg = load_run_config(path)
        if cfg.train.objective not in ("electra", "electra15"):
            raise UserError(f"{path}: a {cfg.train.objective!r} run has no replaced-token discriminator to inspect")
        model = ElectraForPreTraining(cfg.model)
        weights = latest_checkpoint(path) / "model.safetensors"
        state = merge_gdes_state(load_safetensors(weights))
        try:
            model.load_state_dict({k.removeprefix("discriminator."): v for k, v in state.items()
                                   if k.startswith("discriminator.")})
        except RuntimeError as e:  # missing, unexpected or differently shaped tensors
            raise UserError(f"{weights}: the weights do not match the run's config.json "
                            f"({' '.join(str(e).split())[:200]})") from None
        return model.eval(), path / "tokenizer"
    folder, _ = hf_pair_folders(path)
    config = read_json_file(folder / "config.json")
    architectures = (config.get("architectures") if isinstance(config, dict) else None) or []
    if architectures and architectures[0] != "ElectraForPreTraining":
        raise UserError(f"{folder}: a {architectures[0]} has no replaced-token head; give an ElectraForPreTraining "
                        f"folder or a pre-training run")
    return load_hf_model(folder, "discriminator").eval(), folder


@torch.no_grad()
def replaced_probabilities(model: ElectraForPreTraining, tok, text: str) -> list[tuple[str, float]]:
    """(token, P(replaced)) for every token of ``text`` except [CLS] and [SEP]."""
    enc = tok.encode(text)
    ids = torch.tensor([enc.ids[: model.config.max_position_embeddings]])
    probs = torch.sigmoid(model(ids)[0]).tolist()  # (T,)
    return [(t, p) for t, p, special in zip(enc.tokens, probs, enc.special_tokens_mask) if not special]


def inspect_text(model_path: Path, text: str, color: bool | None = None, out=None) -> list[tuple[str, float]]:
    out = out or sys.stdout  # looked up at call time: a default bound at import would miss a redirected stdout
    model, tok_dir = load_discriminator(model_path)
    scored = replaced_probabilities(model, load_tokenizer(tok_dir), text)
    use_color = out.isatty() if color is None else color
    if use_color:  # red: probably replaced (p > 0.5), yellow: unsure (p > 0.2)
        def paint(t, p):
            code = "31;1" if p > 0.5 else "33" if p > 0.2 else "0"
            return f"\033[{code}m{t}\033[0m"
        print(" ".join(paint(t, p) for t, p in scored), file=out)
    for t, p in scored:
        bar = "#" * round(p * 20)
        print(f"{align_right(t, 16)} {p:6.3f} {bar}", file=out)
    return scored


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: 2 for wide and full-width characters (CJK, full-width punctuation),
    0 for combining marks, else 1."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def align_right(text: str, width: int) -> str:
    """``text`` right-aligned in ``width`` terminal columns (str.rjust counts characters, not columns)."""
    return " " * max(0, width - display_width(text)) + text
