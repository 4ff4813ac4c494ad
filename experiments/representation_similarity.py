"""How collapsed is a pre-trained encoder? Mean cosine similarity between final-layer token vectors.

    python experiments/representation_similarity.py RUN [RUN ...]

For each MODEL (a pre-training run, an export or a transformers ELECTRA folder): the discriminator
encoder and, for reference, the same architecture at its from-scratch initialisation, run on the first
200 sentences of rotten_tomatoes dev (``--text`` for another one-column-first TSV). Prints the mean
pairwise cosine of 2,000 random non-padding token vectors (1.0: every token maps to the same vector).
Used in docs/experiments.md.
"""

import argparse

import torch
import torch.nn.functional as F

from electra.data.tokenizer import load_tokenizer
from electra.pretraining.export import load_encoder_source
from electra.model import ElectraForSequenceClassification


def mean_token_cosine(hidden: torch.Tensor, mask: torch.Tensor, n: int = 2000) -> float:
    vectors = F.normalize(hidden[mask.bool()], dim=-1)  # (tokens, H)
    vectors = vectors[torch.randperm(len(vectors), generator=torch.Generator().manual_seed(0))[:n]]
    cos = vectors @ vectors.T
    return cos[~torch.eye(len(vectors), dtype=torch.bool)].mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--text", default="../shared/data/tasks/rotten_tomatoes/dev.tsv")
    ap.add_argument("--sentences", type=int, default=200)
    args = ap.parse_args()
    lines = [line.split("\t")[0] for line in open(args.text, encoding="utf-8").read().splitlines()[1:]]
    lines = lines[:args.sentences]
    for path in args.models:
        cfg, encoder, tokenizer_dir = load_encoder_source(path)
        tok = load_tokenizer(tokenizer_dir)
        tok.enable_padding(pad_id=cfg.pad_token_id)
        tok.enable_truncation(cfg.max_position_embeddings)
        enc = tok.encode_batch(lines)
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        torch.manual_seed(0)
        model = ElectraForSequenceClassification(cfg, 2).electra  # the from-scratch initialisation
        model.eval()
        with torch.no_grad():
            scratch = mean_token_cosine(model(ids, mask), mask)
            model.load_state_dict({k.removeprefix("electra."): v for k, v in encoder.items()})
            trained = mean_token_cosine(model(ids, mask), mask)
        print(f"{path}: mean token cosine {trained:.3f} (from-scratch init {scratch:.3f})")


if __name__ == "__main__":
    main()
