"""The fine-tuning recipe's pieces: layer-wise LR decay, schedule, bucketing, config resolution."""

import random

import pytest
import torch

from electra.config import ModelConfig
from electra.errors import UserError
from electra.finetuning.finetune import (FinetuneConfig, build_optimizer, layerwise_lr_scales, length_bucketed_batches,
                                         schedule)
from electra.model import ElectraForSequenceClassification

CFG = ModelConfig(vocab_size=50, embedding_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=32, max_position_embeddings=32)


def test_layerwise_decay_correct_depths():
    # L = 2 layers, d = 0.5. Correct: head lr, top layer (1) lr*d, layer 0 lr*d^2, embeddings lr*d^3.
    scales = layerwise_lr_scales(ElectraForSequenceClassification(CFG, 2), 0.5, "correct")
    assert scales["classifier.out_proj.weight"] == 1.0
    assert scales["classifier.dense.bias"] == 1.0
    assert scales["electra.encoder.layer.1.output.dense.weight"] == 0.5
    assert scales["electra.encoder.layer.0.attention.self.query.weight"] == 0.25
    assert scales["electra.embeddings.word_embeddings.weight"] == 0.125
    assert scales["electra.embeddings_project.weight"] == 0.125  # factorised projection counts as embedding


def test_layerwise_decay_google_style_skips_one_depth():
    # Google's code: the top layer gets lr*d^2, embeddings lr*d^(L+2).
    scales = layerwise_lr_scales(ElectraForSequenceClassification(CFG, 2), 0.5, "google")
    assert scales["classifier.out_proj.weight"] == 1.0
    assert scales["electra.encoder.layer.1.output.dense.weight"] == 0.25
    assert scales["electra.encoder.layer.0.output.dense.weight"] == 0.125
    assert scales["electra.embeddings.LayerNorm.weight"] == 0.0625


def test_optimizer_groups_carry_scaled_learning_rates_and_no_decay_on_biases():
    model = ElectraForSequenceClassification(CFG, 2)
    cfg = FinetuneConfig(learning_rate=1e-3, layerwise_lr_decay=0.5, weight_decay=0.01)
    opt = build_optimizer(model, cfg, torch.device("cpu"))
    lr_of = {id(p): g["initial_lr"] for g in opt.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["electra.encoder.layer.1.attention.self.key.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(named["electra.embeddings.word_embeddings.weight"])] == pytest.approx(1.25e-4)
    assert wd_of[id(named["classifier.dense.bias"])] == 0.0
    assert wd_of[id(named["electra.encoder.layer.0.output.LayerNorm.weight"])] == 0.0
    assert wd_of[id(named["classifier.dense.weight"])] == 0.01
    assert sum(len(g["params"]) for g in opt.param_groups) == len(named)


def test_schedule_warmup_then_linear_decay_to_zero():
    total, warmup = 100, 10
    assert schedule(0, total, warmup) == pytest.approx(0.1)      # first update: 1/10 of the peak
    assert schedule(9, total, warmup) == pytest.approx(1.0)      # last warm-up update: the peak
    assert schedule(10, total, warmup) == pytest.approx(1.0)     # decay starts from the peak
    assert schedule(55, total, warmup) == pytest.approx(0.5)     # (100 - 55) / 90
    assert schedule(99, total, warmup) == pytest.approx(1 / 90)  # last update: small, not zero
    assert schedule(0, 10, 0) == pytest.approx(1.0)


def test_length_bucketing_covers_every_example_once_and_reduces_padding():
    rng = random.Random(0)
    lengths = [rng.randint(5, 120) for _ in range(1000)]
    batches = length_bucketed_batches(lengths, 32, random.Random(1), pool_batches=10)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)

    def padded(bs):
        return sum(max(lengths[i] for i in b) * len(b) for b in bs)
    shuffled = list(range(1000))
    random.Random(1).shuffle(shuffled)
    plain = [shuffled[j:j + 32] for j in range(0, 1000, 32)]
    assert padded(batches) < 0.7 * padded(plain)
    # a different epoch (rng state) gives a different order
    assert length_bucketed_batches(lengths, 32, random.Random(2), 10) != batches


def test_config_resolution_follows_the_paper():
    small = ModelConfig(hidden_size=256, num_hidden_layers=12, num_attention_heads=4)
    base = ModelConfig(hidden_size=768, embedding_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072)
    large = ModelConfig(hidden_size=1024, embedding_size=1024, num_hidden_layers=24, num_attention_heads=16,
                        intermediate_size=4096)
    assert FinetuneConfig().resolve(small, "classification").learning_rate == 3e-4
    assert FinetuneConfig().resolve(base, "classification").learning_rate == 1e-4
    r = FinetuneConfig().resolve(large, "qa")
    assert (r.learning_rate, r.layerwise_lr_decay, r.max_seq_length) == (5e-5, 0.9, 384)
    assert FinetuneConfig().resolve(small, "tagging").layerwise_lr_decay == 0.8
    assert FinetuneConfig(learning_rate=1e-3).resolve(small, "tagging").learning_rate == 1e-3
    with pytest.raises(UserError, match="lr_decay_style 'bert' is not one of correct, google"):
        FinetuneConfig(lr_decay_style="bert").resolve(small, "tagging")
    with pytest.raises(UserError, match="init 'random' is not one of pretrained, scratch"):
        FinetuneConfig(init="random").validate()
    # The optimiser limits are pre-training's (config.check_optimiser_limits), named without "train.".
    with pytest.raises(UserError, match=r"^learning_rate x weight_decay must be below 1.*got 20.0 x 0.1$"):
        FinetuneConfig(learning_rate=20.0, weight_decay=0.1).validate()
    with pytest.raises(UserError, match=r"^weight_decay must be >= 0, adam_epsilon and max_grad_norm > 0"):
        FinetuneConfig(adam_epsilon=0.0).validate()
