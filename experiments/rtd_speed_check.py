"""How fast can a discriminator alone learn to detect unigram-sampled replacements?

No generator: 15% (``--mask``) of each window's tokens are replaced by draws from the training data's unigram
distribution (the paper's "unigram generator"), and a `tiny` discriminator learns to find them. Each step
uses the same tokens (``--batch`` examples of the data's length) cut into windows of ``--window`` tokens.
Every ``--eval-every`` steps it prints the held-out yardstick (electra/pretraining/yardstick.py), which scores whole
128-token examples. This isolates how fast replaced-token detection learns context, from the generator. The
replacements come from the product's masking (``mask_batch`` with unigram noise); masked-LM and hybrid training
are the product's own objectives (``electra pretrain --set train.objective=mlm`` / ``hybrid``).

    python experiments/rtd_speed_check.py DATA --window 8 --steps 300 [--lr 1e-3] [--glorot-head]
"""

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from electra.config import preset_config
from electra.data.loader import PretrainingData, token_distributions
from electra.model import ElectraForPreTraining
from electra.pretraining.batches import BatchStream, cut_into_windows, mask_batch
from electra.pretraining.setup import build_optimizer
from electra.pretraining.step import learning_rate
from electra.pretraining.yardstick import yardstick_aucs


def ppmi_embeddings(data, dim: int, window: int = 2, max_examples: int = 20000) -> torch.Tensor:
    """(V, dim) word vectors: truncated SVD of the positive PMI of token pairs within ``window``, scaled to
    the initialiser's std (0.02)."""
    n = data.num_examples("train")
    ids, _ = data.examples("train", np.unique(np.linspace(0, n - 1, min(n, max_examples)).astype(np.int64)))
    V = data.vocab_size
    counts = np.zeros(V * V)
    for d in range(1, window + 1):
        a, b = ids[:, :-d].ravel().astype(np.int64), ids[:, d:].ravel().astype(np.int64)
        ok = (a != 0) & (b != 0)
        counts += np.bincount(a[ok] * V + b[ok], minlength=V * V) + np.bincount(b[ok] * V + a[ok], minlength=V * V)
    C = torch.from_numpy(counts.reshape(V, V))
    row = C.sum(1, keepdim=True)
    col = C.sum(0, keepdim=True) ** 0.75  # context-distribution smoothing (Levy et al. 2015)
    pmi = torch.log((C * col.sum()).clamp(min=1e-12) / (row * col).clamp(min=1e-12))
    ppmi = torch.where(C > 0, pmi.clamp(min=0), torch.zeros_like(pmi)).float()
    U, S, _ = torch.svd_lowrank(ppmi, q=dim, niter=4)
    vectors = U * S.sqrt()
    return vectors / vectors.std() * 0.02


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--mask", type=float, default=0.15)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--glorot-head", action="store_true", help="Google's init of the output layer")
    p.add_argument("--zero-bias", action="store_true", help="output bias 0 instead of the prior's log-odds")
    p.add_argument("--mlm-weight", type=float, default=0.0,
                   help="hybrid: also predict the original token at the replaced slots from the discriminator's "
                        "hidden states (an MLM head tied to its word embeddings), with this weight")
    p.add_argument("--ppmi-init", action="store_true", help="word embeddings from an SVD of the corpus's PPMI")
    p.add_argument("--schedule", type=int, default=0, help="learning-rate schedule length (default: --steps)")
    p.add_argument("--dropout", type=float, default=0.1, help="hidden and attention dropout")
    p.add_argument("--local-init", action="store_true", help="electra/pretraining/local_init.py: layer 0 reads neighbours")
    p.add_argument("--local-positions", action="store_true", help="every window starts at position 0")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    data = PretrainingData(a.data)
    cfg = preset_config("tiny", vocab_size=data.vocab_size, pad_token_id=data.special_ids["pad"])
    cfg.model.num_hidden_layers = a.layers
    cfg.model.hidden_dropout_prob = cfg.model.attention_probs_dropout_prob = a.dropout
    cfg.train.learning_rate, cfg.train.warmup_steps, cfg.train.max_steps = a.lr, a.warmup, a.schedule or a.steps
    model = ElectraForPreTraining(cfg.model)
    head = model.discriminator_predictions.dense_prediction
    with torch.no_grad():
        if a.glorot_head:
            torch.nn.init.xavier_uniform_(head.weight)
        head.bias.fill_(0.0 if a.zero_bias else math.log(a.mask / (1 - a.mask)))
    if a.local_init:
        from electra.pretraining.local_init import init_local_attention
        init_local_attention(model.electra)
    if a.ppmi_init:
        with torch.no_grad():
            model.electra.embeddings.word_embeddings.weight.copy_(ppmi_embeddings(data, cfg.model.embedding_size))
    mlm_head = None
    if a.mlm_weight:
        from electra.model import ElectraGeneratorPredictions
        mlm_head = ElectraGeneratorPredictions(cfg.model)
        mlm_bias = torch.nn.Parameter(torch.zeros(data.vocab_size))
        model.mlm_head, model.mlm_bias = mlm_head, mlm_bias  # registered: the optimiser sees them
    optimizer = build_optimizer(model, cfg.train, torch.device("cpu"))
    dists = token_distributions(data)
    cdf = dists["unigram"].cumsum(0)
    stream = BatchStream(data, a.batch, 0, a.seed)
    t0 = time.perf_counter()
    losses = []
    for step in range(a.steps):
        for g in optimizer.param_groups:
            g["lr"] = learning_rate(step, cfg.train)
        batch = next(stream)
        if a.window < data.max_seq_length:
            batch = cut_into_windows(batch, a.window, data.special_ids["pad"])
            if a.local_positions:
                batch["position_ids"] = torch.arange(a.window).expand_as(batch["input_ids"])
        ids, att, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        # The product's masking: --mask of the tokens selected, every one replaced by a unigram draw.
        mb = mask_batch(ids, att, types, batch["keys"], data.special_ids, a.mask, 0.0, a.seed,
                        random_token_prob=1.0, noise_cdf=cdf)
        positions, valid, corrupted = mb.positions, mb.valid, mb.generator_input_ids
        labels = (corrupted != ids).float()
        h = model.electra(corrupted, att, types, batch.get("position_ids"))  # (B, T, H)
        logits = model.discriminator_predictions(h)
        loss = (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * att).sum() / att.sum()
        if mlm_head is not None:
            hs = h.gather(1, positions[..., None].expand(-1, -1, h.shape[-1]))  # (B, P, H)
            lm = mlm_head(hs) @ model.electra.embeddings.word_embeddings.weight.T + model.mlm_bias  # (B, P, V)
            ce = F.cross_entropy(lm.flatten(0, 1), ids.gather(1, positions).flatten(), reduction="none")
            loss = loss + a.mlm_weight * (ce * valid.flatten()).sum() / valid.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        frac = float(labels.sum() / att.sum())
        losses.append(-(frac * math.log(frac) + (1 - frac) * math.log(1 - frac)) - loss.item())
        if (step + 1) % a.eval_every == 0:
            y = yardstick_aucs(model, data, dists, torch.device("cpu"), 64, torch.no_grad)
            print(f"step {step + 1:5d}  margin {np.mean(losses[-a.eval_every:]):+.4f}  "
                  f"unigram_auc {y['eval_unigram_auc']:.3f}  uniform_auc {y['eval_uniform_auc']:.3f}  "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
    stream.close()


if __name__ == "__main__":
    main()
