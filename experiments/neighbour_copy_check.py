"""How long does a masked LM take to learn to look at its neighbour? A synthetic task that isolates it.

Random tokens from a VOCAB-token vocabulary, each written twice in a row (``a a b b c c ...``), so a masked
token's twin right beside it gives the answer. A model that has not learnt to attend to its neighbour sits at
ln(VOCAB) nats; one that has falls towards 0. At initialisation attention is uniform, so the twin is 1/LENGTH
of what a position sees, and the plateau grows steeply with LENGTH (8 leaves it in ~200 steps; 16 and 64 did not
in 400-1,000). Results: docs/finetune.md, "The cause: sequence length".

    python experiments/neighbour_copy_check.py [--length 64] [--vocab 100] [--steps 400] [--layers N] ...
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from electra.config import preset_config
from electra.model import ElectraForMaskedLM

MASK_ID, FIRST_ORDINARY_ID = 4, 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=int, default=64, help="tokens per sequence (even)")
    ap.add_argument("--tokens-per-step", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=100, help="distinct tokens used")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--layers", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--dropout", type=float)
    ap.add_argument("--init-std", type=float)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    cfg = preset_config(args.preset, vocab_size=FIRST_ORDINARY_ID + args.vocab).model
    cfg.num_hidden_layers = args.layers or cfg.num_hidden_layers
    cfg.num_attention_heads = args.heads or cfg.num_attention_heads
    if args.dropout is not None:
        cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = args.dropout
    if args.init_std is not None:
        cfg.initializer_range = args.init_std
    model = ElectraForMaskedLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, eps=1e-6, weight_decay=0.01)
    rng = np.random.default_rng(args.seed)
    batch = args.tokens_per_step // args.length
    print(f"uniform loss ln({args.vocab}) = {np.log(args.vocab):.3f} nats; {vars(args)}", flush=True)
    losses = []
    for step in range(args.steps):
        halves = torch.from_numpy(rng.integers(FIRST_ORDINARY_ID, FIRST_ORDINARY_ID + args.vocab,
                                               (batch, args.length // 2)))
        ids = halves.repeat_interleave(2, dim=1)  # (B, T): every token twice in a row
        selected = torch.rand(ids.shape) < 0.15
        hidden = model.electra(ids.masked_fill(selected, MASK_ID), torch.ones_like(ids))[selected]  # (S, H)
        loss = F.cross_entropy(model.generator_lm_head(model.generator_predictions(hidden)), ids[selected])
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            print(step + 1, round(float(np.mean(losses[-50:])), 3), flush=True)


if __name__ == "__main__":
    main()
