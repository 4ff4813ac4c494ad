"""Replaced-token detection signals: the AUC, the margin below the label entropy, and the held-out yardstick."""

import json
import math

import numpy as np
import pytest
import torch
from synthetic import SMALL_RUN, SPECIAL_IDS, make_data_dir

from electra.data.loader import (PretrainingData, eval_batches, token_distributions, uniform_distribution,
                                 unigram_distribution)
from electra.pretraining.batches import candidate_mask
from electra.pretraining.pretrain import pretrain
from electra.pretraining.stats import binary_auc, label_entropy
from electra.pretraining.yardstick import YARDSTICK_MASK_PROB, yardstick_aucs, yardstick_corruption


def _pairwise_auc(scores, labels):
    """The definition: P(a positive scores above a negative), ties counted half."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(4))
def test_auc_equals_the_pairwise_definition_with_ties_and_a_weight_mask(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (300,), generator=g).float()  # many ties
    labels = torch.rand(300, generator=g) < 0.3
    weight = torch.rand(300, generator=g) < 0.7
    auc, defined = binary_auc(scores, labels, weight)
    expected = _pairwise_auc(scores[weight].tolist(), labels[weight].tolist())
    assert defined.item() == 1.0 and auc.item() == pytest.approx(expected, abs=1e-6)


def test_auc_of_perfect_reversed_constant_and_one_class_scores():
    labels = torch.tensor([0, 0, 1, 1, 0, 1]).bool()
    every = torch.ones(6, dtype=torch.bool)
    assert binary_auc(labels.float(), labels, every)[0].item() == 1.0
    assert binary_auc(-labels.float(), labels, every)[0].item() == 0.0
    assert binary_auc(torch.zeros(6), labels, every)[0].item() == 0.5
    auc, defined = binary_auc(torch.arange(6.0), torch.zeros(6, dtype=torch.bool), every)
    assert defined.item() == 0.0 and auc.item() == 0.0  # no positives: undefined, not 0.5 by accident


def test_label_entropy_is_the_loss_of_the_constant_predictor():
    p = 0.15
    constant_bce = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert label_entropy(p) == pytest.approx(constant_bce)
    assert label_entropy(0.5) == pytest.approx(math.log(2))
    assert label_entropy(0.0) == 0.0 and label_entropy(1.0) == 0.0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return PretrainingData(make_data_dir(tmp_path_factory.mktemp("d") / "data", n_valid=24))


def _held_out(data):
    batch = next(eval_batches(data, 24, 24))
    return batch, candidate_mask(batch["input_ids"], batch["attention_mask"], data.special_ids)


def test_unigram_distribution_counts_training_tokens_without_specials(data):
    p = unigram_distribution(data, data.special_ids)
    assert p.sum().item() == pytest.approx(1.0)
    assert all(p[i] == 0 for i in SPECIAL_IDS.values())
    ids, _ = data.examples("train", torch.arange(data.num_examples("train")).numpy())
    counts = torch.bincount(torch.from_numpy(ids).flatten(), minlength=data.vocab_size).double()
    counts[list(SPECIAL_IDS.values())] = 0
    assert torch.allclose(p, counts / counts.sum())  # the toy split is small enough to be counted whole


def test_yardstick_replaces_fifteen_percent_of_candidates_with_draws_from_the_distribution(data):
    batch, candidates = _held_out(data)
    only = torch.zeros(data.vocab_size, dtype=torch.float64)
    only[7] = 1.0  # every draw is token 7
    corrupted = yardstick_corruption(batch["input_ids"], candidates, batch["keys"], only)
    changed = corrupted != batch["input_ids"]
    assert not (changed & ~candidates).any()  # [CLS], [SEP], padding untouched
    assert (corrupted[changed] == 7).all()
    n = candidates.sum(1)
    drawn = ((corrupted == 7) & candidates).sum(1) - ((batch["input_ids"] == 7) & candidates).sum(1)
    assert (drawn <= torch.clamp((n * YARDSTICK_MASK_PROB).round().long(), min=1)).all()
    again = yardstick_corruption(batch["input_ids"], candidates, batch["keys"], only)
    assert torch.equal(corrupted, again)  # keyed: the same corruption every time
    uniform = uniform_distribution(data.vocab_size, data.special_ids)
    drawn_uniform = yardstick_corruption(batch["input_ids"], candidates, batch["keys"], uniform)
    assert not torch.isin(drawn_uniform[candidates], torch.tensor(list(SPECIAL_IDS.values()))).any()


class _Scorer(torch.nn.Module):
    """A stand-in discriminator: a fixed score per token id, whatever its context."""

    def __init__(self, score_of_id):
        super().__init__()
        self.score_of_id = score_of_id

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.score_of_id[input_ids]


def _zipf_data_dir(path):
    """The synthetic layout with every ordinary token redrawn from a Zipf law (frequent and rare ids)."""
    make_data_dir(path, n_train=400, n_valid=64, vocab=400, length=64)
    rng = np.random.default_rng(0)
    for split in ("train", "valid"):
        f = path / f"{split}-00000.ids.npy"
        ids = np.load(f)
        ordinary = ids >= 5
        ids[ordinary] = 5 + np.minimum(rng.zipf(1.3, ordinary.sum()) - 1, 394)
        np.save(f, ids)
    return path


def test_yardstick_rewards_token_identity_on_uniform_draws_and_only_context_on_unigram_draws(tmp_path):
    # A Zipf-like toy corpus: the scorer "rarer is more suspicious" knows frequencies and nothing else.
    data = PretrainingData(_zipf_data_dir(tmp_path / "zipf"))
    dists = token_distributions(data)
    rarity = -torch.log(dists["unigram"].float() + 1e-9)
    aucs = yardstick_aucs(_Scorer(rarity), data, dists, torch.device("cpu"), 32, torch.autograd.grad_mode.no_grad)
    assert aucs["eval_uniform_auc"] > 0.8  # uniform draws are mostly ids the held-out text rarely has
    assert abs(aucs["eval_unigram_auc"] - 0.5) < 0.1  # unigram draws look like the text's own tokens
    constant = yardstick_aucs(_Scorer(torch.zeros(data.vocab_size)), data, dists, torch.device("cpu"), 32,
                              torch.autograd.grad_mode.no_grad)
    assert constant == {"eval_unigram_auc": 0.5, "eval_uniform_auc": 0.5}


def test_training_and_eval_records_carry_auc_margin_and_the_yardstick(tmp_path):
    data_dir = make_data_dir(tmp_path / "data")
    run = pretrain(data_dir, tmp_path / "run", preset="tiny", max_steps=10, overrides=SMALL_RUN, progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "gen_loss" in r]
    evals = [r for r in records if r.get("event") == "eval"]
    for r in train:
        assert 0.0 <= r["disc_auc"] <= 1.0
        assert r["disc_entropy"] == pytest.approx(label_entropy(r["replaced_frac"]))  # every token is scored
        assert r["disc_margin"] == pytest.approx(r["disc_entropy"] - r["disc_loss"])
    for r in evals:
        assert 0.0 <= r["eval_unigram_auc"] <= 1.0 and 0.0 <= r["eval_uniform_auc"] <= 1.0
        assert 0.0 <= r["eval_disc_auc"] <= 1.0
    # The yardstick does not depend on the run's seed: the same weights score the same under another seed.
    from electra.pretraining.evaluation import evaluate, run_at_checkpoint
    checkpoint = run_at_checkpoint(run)
    first = evaluate(checkpoint)
    checkpoint.cfg.train.seed += 1
    second = evaluate(checkpoint)
    assert first["eval_unigram_auc"] == second["eval_unigram_auc"] == evals[-1]["eval_unigram_auc"]
    assert first["eval_disc_loss"] != second["eval_disc_loss"]  # while the run's own masking did change


def test_mlm_runs_have_no_yardstick(tmp_path):
    run = pretrain(make_data_dir(tmp_path / "data"), tmp_path / "run", preset="tiny", max_steps=5,
                   overrides=SMALL_RUN + ["train.objective=mlm"], progress=False)
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert evals and not any("eval_unigram_auc" in r or "disc_auc" in r for r in evals)
