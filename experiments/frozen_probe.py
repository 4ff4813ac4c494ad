"""Does a frozen encoder carry what a task needs? Logistic regression on frozen sentence features.

    python experiments/frozen_probe.py MODEL [MODEL ...] [--train TSV --dev TSV]

For each MODEL (a pre-training run, an export or a transformers ELECTRA folder) and, for reference, the same
architecture at its from-scratch initialisation: every layer's [CLS] vector and mean of the real tokens'
vectors (embeddings = layer 0) on a classification task's train and dev sentences (rotten_tomatoes by
default), then an L2-regularised logistic regression fitted on train (full-batch L-BFGS, weight decay chosen
on dev from a small grid, so the numbers are an upper bound for a linear read-out). Prints dev accuracy per
layer and pooling; ``--bag-of-words`` adds the same classifier on word-piece counts (the tokenizer's
vocabulary), the lexical baseline. Used in docs/finetune.md.
"""

import argparse

import torch
import torch.nn.functional as F

from electra.data.readers import read_classification
from electra.data.tokenizer import load_tokenizer
from electra.pretraining.export import load_encoder_source
from electra.model import ElectraForSequenceClassification


def read_task(path: str) -> tuple[list[str], torch.Tensor]:
    """A single-sentence classification file's texts and label indices (in the sorted label order)."""
    examples, info = read_classification(path)
    return [e.text for e in examples], torch.tensor([info["labels"].index(e.label) for e in examples])


@torch.no_grad()
def layer_features(encoder, tok, texts: list[str], batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(layers + 1, N, H) [CLS] vectors and mean-pooled vectors, layer 0 being the embeddings (projected to the
    hidden size when factorised): the outputs of the encoder's own forward, read with forward hooks."""
    first = encoder.embeddings_project if hasattr(encoder, "embeddings_project") else encoder.embeddings
    hidden: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _inputs, out: hidden.append(out))
             for m in (first, *encoder.encoder.layer)]
    cls, mean = [], []
    try:
        for i in range(0, len(texts), batch):
            enc = tok.encode_batch(texts[i:i + batch])
            ids = torch.tensor([e.ids for e in enc])
            mask = torch.tensor([e.attention_mask for e in enc])
            hidden.clear()
            encoder(ids, mask, torch.zeros_like(ids))
            m = mask[..., None].float()
            cls.append(torch.stack([x[:, 0] for x in hidden]))
            mean.append(torch.stack([(x * m).sum(1) / m.sum(1) for x in hidden]))
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(cls, 1), torch.cat(mean, 1)


def probe(train_x, train_y, dev_x, dev_y) -> float:
    """Best dev accuracy of a logistic regression over a weight-decay grid (standardised features)."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, dev_x = (train_x - mu) / sd, (dev_x - mu) / sd
    best = 0.0
    for wd in (1e-4, 1e-3, 1e-2, 1e-1):
        w = torch.zeros(train_x.shape[1], 2, requires_grad=True)
        b = torch.zeros(2, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(train_x @ w + b, train_y) + wd * (w ** 2).sum()
            loss.backward()
            return loss
        opt.step(closure)
        with torch.no_grad():
            best = max(best, ((dev_x @ w + b).argmax(1) == dev_y).float().mean().item())
    return best


def bag_of_pieces(tok, texts: list[str], vocab_size: int) -> torch.Tensor:
    """(N, V) log(1 + count) of each word piece: the features of a bag-of-words classifier."""
    x = torch.zeros(len(texts), vocab_size)
    for i, enc in enumerate(tok.encode_batch(texts)):
        ids = torch.tensor([t for t, m in zip(enc.ids, enc.attention_mask) if m])
        x[i].index_add_(0, ids, torch.ones(len(ids)))
    return torch.log1p(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--train", default="../shared/data/tasks/rotten_tomatoes/train.tsv")
    ap.add_argument("--dev", default="../shared/data/tasks/rotten_tomatoes/dev.tsv")
    ap.add_argument("--bag-of-words", action="store_true", help="also a logistic regression on word-piece counts")
    args = ap.parse_args()
    train_texts, train_y = read_task(args.train)
    dev_texts, dev_y = read_task(args.dev)
    for path in args.models:
        cfg, weights, tokenizer_dir = load_encoder_source(path)
        tok = load_tokenizer(tokenizer_dir)
        tok.enable_padding(pad_id=cfg.pad_token_id)
        tok.enable_truncation(128)
        if args.bag_of_words:
            bow = probe(bag_of_pieces(tok, train_texts, cfg.vocab_size), train_y,
                        bag_of_pieces(tok, dev_texts, cfg.vocab_size), dev_y)
            print(f"bag of word pieces ({cfg.vocab_size}), logistic regression: {bow * 100:.1f}", flush=True)
        torch.manual_seed(0)
        scratch = ElectraForSequenceClassification(cfg, 2).electra.eval()  # the from-scratch initialisation
        trained = ElectraForSequenceClassification(cfg, 2).electra.eval()
        trained.load_state_dict({k.removeprefix("electra."): v for k, v in weights.items()})
        for name, encoder in (("scratch init", scratch), (path, trained)):
            tr_cls, tr_mean = layer_features(encoder, tok, train_texts)
            dv_cls, dv_mean = layer_features(encoder, tok, dev_texts)
            cells = []
            for layer in range(len(tr_cls)):
                cells.append(f"L{layer} cls {probe(tr_cls[layer], train_y, dv_cls[layer], dev_y) * 100:.1f} "
                             f"mean {probe(tr_mean[layer], train_y, dv_mean[layer], dev_y) * 100:.1f}")
            print(f"{name}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
