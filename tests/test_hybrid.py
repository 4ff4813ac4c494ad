"""The hybrid objective: one encoder pass; a masked LM at the selected tokens, a detector at the others."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from electra.config import ModelConfig, TrainConfig, apply_overrides, preset_config
from electra.errors import UserError
from electra.pretraining.batches import masked_on_device
from electra.pretraining.flops import training_flops_per_step
from electra.pretraining.objective import ElectraPretrainer
from electra.pretraining.setup import build_model

SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
CFG = ModelConfig(vocab_size=97, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)


def _batch(B=64, T=40):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 97, (B, T), generator=g)
    ids[:, 0], ids[:, -1] = SPECIAL["cls"], SPECIAL["sep"]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
            "keys": torch.arange(B)}


def _train(**kw):
    t = TrainConfig(objective="hybrid", mask_prob=0.3, mask_token_prob=0.5, **kw)
    t.validate()
    return t


def _point_mass(token: int) -> torch.Tensor:
    p = torch.zeros(97, dtype=torch.float64)
    p[token] = 1.0
    return p.cumsum(0)


def test_selected_tokens_are_masked_or_replaced_by_noise_draws_and_the_rest_untouched():
    batch = _batch(B=512)
    mb = masked_on_device(batch, SPECIAL, _train(), torch.device("cpu"), vocab_size=97, noise_cdf=_point_mass(50))
    sel, inp, ids = mb.selected, mb.generator_input_ids, batch["input_ids"]
    assert torch.equal(inp[~sel], ids[~sel])
    shown = inp[sel]
    assert set(shown.unique().tolist()) <= {SPECIAL["mask"], 50}  # [MASK] or the noise's only token
    assert abs((shown == SPECIAL["mask"]).float().mean().item() - 0.5) < 0.02
    assert torch.equal(mb.shown_mask, inp == SPECIAL["mask"])


def _model():
    torch.manual_seed(0)
    return ElectraPretrainer(CFG, CFG, "hybrid").eval()


def test_one_encoder_pass_feeds_both_heads_and_the_loss_is_mlm_plus_weighted_detection():
    model = _model()
    assert model.generator.electra is model.discriminator.electra  # one encoder
    batch = _batch()
    uniform = torch.ones(97, dtype=torch.float64)
    uniform[list(SPECIAL.values())] = 0
    mb = masked_on_device(batch, SPECIAL, _train(), torch.device("cpu"), vocab_size=97, noise_cdf=uniform.cumsum(0))
    calls = []
    model.discriminator.electra.register_forward_hook(lambda *a: calls.append(1))
    loss, stats = model(mb, 0, 10.0, mb.valid.sum(), mb.attention_mask.sum())
    assert len(calls) == 1
    # The same loss by hand from the two heads on one encoding.
    with torch.no_grad():
        h = model.discriminator.electra(mb.generator_input_ids)
        lm = model.generator.generator_lm_head(model.generator.generator_predictions(h))  # (B, T, V)
        targets = batch["input_ids"]
        sel = mb.selected
        mlm = F.cross_entropy(lm[sel], targets[sel])
        scored = ~mb.shown_mask
        labels = (mb.generator_input_ids != targets).float()
        bce = F.binary_cross_entropy_with_logits(model.discriminator.discriminator_predictions(h)[scored],
                                                 labels[scored], reduction="sum") / targets.numel()
    assert loss.item() == pytest.approx((mlm + 10.0 * bce).item(), rel=1e-5)
    from electra.pretraining.stats import STAT_NAMES
    s = dict(zip(STAT_NAMES, stats.tolist()))
    assert s["disc_terms"] == scored.sum().item()  # [MASK] positions are not scored
    assert s["num_replaced"] == (labels.bool() & scored).sum().item() > 0
    assert s["model_mlm_terms"] == sel.sum().item()


def test_the_detector_starts_at_the_share_of_replaced_tokens_it_scores():
    cfg = apply_overrides(preset_config("tiny", vocab_size=97), ["train.objective=hybrid", "train.mask_prob=0.3",
                                                                 "train.mask_token_prob=0.5"])
    bias = build_model(cfg).discriminator.discriminator_predictions.dense_prediction.bias.item()
    share = 0.3 * 0.5 / (1 - 0.3 * 0.5)  # replaced among the tokens not shown as [MASK]
    assert torch.sigmoid(torch.tensor(bias)).item() == pytest.approx(share, rel=1e-4)


def test_hybrid_costs_one_encoder_pass_plus_both_heads():
    base = preset_config("tiny", vocab_size=8000)
    mlm = apply_overrides(dataclasses.replace(base, train=dataclasses.replace(base.train)), ["train.objective=mlm"])
    hybrid = apply_overrides(preset_config("tiny", vocab_size=8000), ["train.objective=hybrid"])
    electra = preset_config("tiny", vocab_size=8000)
    f_mlm, f_hybrid, f_electra = (training_flops_per_step(c, 128)["train"] for c in (mlm, hybrid, electra))
    N, H = 32 * 128, 128
    assert f_hybrid - f_mlm == 3 * (2 * N * H * H + 2 * N * H)  # the detector head on every token
    assert f_hybrid < f_electra  # no generator encoder


@pytest.mark.parametrize("override, message", [
    ("train.mask_token_prob=1.0", "mask_token_prob must be in"),
    ("train.corruption=bert", "train.corruption auto"),
    ("generator.sharing=none", "share one encoder"),
])
def test_settings_the_hybrid_cannot_use_are_refused(override, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(preset_config("tiny"), ["train.objective=hybrid", override])
