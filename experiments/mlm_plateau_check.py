"""Does a small masked LM learn any context, and how fast? [MASK]-only loss against the unigram entropy.

Every selected token becomes [MASK], so the loss is the [MASK]-only cross-entropy and no copying shortcut
exists. A model whose loss sits at the corpus's unigram entropy (printed first) predicts token frequencies
and uses no context. With ``--models hf,ours`` transformers' ElectraForMaskedLM and ours start from the same
weights (transformers' init copied into ours) and take the same batches: their losses should agree.

    python experiments/mlm_plateau_check.py DATA_DIR [--lr 1e-3] [--steps 400] [--models ours] ...

DATA_DIR: an `electra data build` folder. Results: docs/finetune.md.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from electra.config import ModelConfig, preset_config
from electra.model import ElectraForMaskedLM

MASK_ID, FIRST_ORDINARY_ID = 4, 5  # the special ids of our tokenizers: [PAD] [UNK] [CLS] [SEP] [MASK]


def unigram_entropy(ids: np.ndarray) -> float:
    """Entropy (nats) of the ordinary-token distribution: the loss of a model that ignores context."""
    counts = np.bincount(ids[ids >= FIRST_ORDINARY_ID].ravel())
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def sinusoidal_positions(num_positions: int, dim: int, std: float) -> torch.Tensor:
    """(P, E) sinusoids of Vaswani et al., scaled to per-entry standard deviation ``std``.

    PE(p + k) is a fixed rotation of PE(p), so "attend to the next token" is one linear map of the query and key,
    where random position vectors give attention nothing to build on."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]  # (P, 1)
    frequency = torch.exp(-np.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (E/2,)
    pe = torch.zeros(num_positions, dim)
    pe[:, 0::2] = torch.sin(position * frequency)
    pe[:, 1::2] = torch.cos(position * frequency)
    return pe * (std * np.sqrt(2.0))  # sin/cos entries have variance 1/2


def build_models(cfg: ModelConfig, which: list[str], position_init: str) -> dict[str, torch.nn.Module]:
    from transformers import ElectraConfig
    from transformers import ElectraForMaskedLM as HFElectraForMaskedLM

    hf = HFElectraForMaskedLM(ElectraConfig(
        vocab_size=cfg.vocab_size, embedding_size=cfg.embedding_size, hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position_embeddings,
        hidden_dropout_prob=cfg.hidden_dropout_prob, attention_probs_dropout_prob=cfg.attention_probs_dropout_prob))
    if position_init == "sinusoidal":
        with torch.no_grad():
            pe = hf.electra.embeddings.position_embeddings.weight
            pe.copy_(sinusoidal_positions(*pe.shape, std=cfg.initializer_range))
    models: dict[str, torch.nn.Module] = {}
    if "hf" in which:
        models["hf"] = hf
    if "ours" in which:
        ours = ElectraForMaskedLM(cfg)
        ours.load_state_dict(hf.state_dict(), strict=False)  # same start; the tied head weight is shared
        ours.tie_weights()
        models["ours"] = ours
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--heads", type=int, help="attention heads (default: the preset's)")
    ap.add_argument("--layers", type=int, help="encoder layers (default: the preset's)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, help="keep the first SEQ tokens of each example (default: all)")
    ap.add_argument("--short-seq", type=int, help="sequence-length warm-up: the first --short-steps steps see only "
                    "SHORT_SEQ-token windows (batch scaled up to keep the tokens per step)")
    ap.add_argument("--short-steps", type=int, default=0)
    ap.add_argument("--position-init", choices=("random", "sinusoidal"), default="random")
    ap.add_argument("--dropout", type=float, help="hidden and attention dropout (default: the preset's)")
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--models", default="ours", help="comma-separated: hf, ours")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    manifest = json.loads((Path(args.data_dir) / "manifest.json").read_text())
    cfg = preset_config(args.preset, vocab_size=manifest["vocab_size"]).model
    cfg.num_attention_heads = args.heads or cfg.num_attention_heads
    cfg.num_hidden_layers = args.layers or cfg.num_hidden_layers
    if args.dropout is not None:
        cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = args.dropout
    ids_all = np.load(Path(args.data_dir) / "train-00000.ids.npy").astype(np.int64)  # (N, T)
    ids_all = ids_all[:, :args.seq]
    print(f"unigram entropy {unigram_entropy(ids_all):.3f} nats; {vars(args)}", flush=True)

    models = build_models(cfg, args.models.split(","), args.position_init)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=args.lr, betas=(0.9, args.beta2), eps=1e-6,
                                 weight_decay=0.01) for k, m in models.items()}
    rng = np.random.default_rng(args.seed)
    losses: dict[str, list[float]] = {k: [] for k in models}
    start = time.time()
    for step in range(args.steps):
        ids = torch.from_numpy(ids_all[rng.integers(0, len(ids_all), args.batch)])  # (B, T)
        if args.short_seq and step < args.short_steps:  # (B * T / S, S): the same tokens, cut into short windows
            ids = ids[:, :ids.shape[1] // args.short_seq * args.short_seq].reshape(-1, args.short_seq)
        selected = (torch.rand(ids.shape) < 0.15) & (ids >= FIRST_ORDINARY_ID)
        inputs = ids.masked_fill(selected, MASK_ID)
        attention_mask = (ids != 0).long()
        for k, m in models.items():
            m.train()
            for group in opts[k].param_groups:
                group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
            if k == "hf":
                logits = m(input_ids=inputs, attention_mask=attention_mask).logits[selected]  # (S, V)
            else:  # the V-way head only at the selected positions (the same math, ~7x less of it)
                hidden = m.electra(inputs, attention_mask)[selected]  # (S, H)
                logits = m.generator_lm_head(m.generator_predictions(hidden))
            loss = F.cross_entropy(logits, ids[selected])
            opts[k].zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opts[k].step()
            losses[k].append(loss.item())
        if (step + 1) % 50 == 0:
            means = {k: round(float(np.mean(v[-50:])), 3) for k, v in losses.items()}
            print(step + 1, means, f"{time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
