"""Training algorithms (paper §3.2, appendix F): joint (default), two_stage, adversarial.

The defining rules one by one (stage one runs no discriminator, stage two freezes the generator, the switch copies
the generator into the discriminator, REINFORCE's gradient and direction, the baseline), then each algorithm end to
end: pre-train, exact resume across the switch, export.
"""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from synthetic import make_data_dir
from torch import nn

from electra.config import ModelConfig, TrainConfig, apply_overrides, preset_config
from electra.errors import UserError
from electra.pretraining.algorithms import (RewardBaseline, algorithm_state, init_discriminator_from_generator,
                                            load_algorithm_state)
from electra.pretraining.batches import mask_batch
from electra.pretraining.export import export_run, load_encoder_source
from electra.pretraining.objective import ElectraPretrainer, gumbel_sample
from electra.pretraining.pretrain import pretrain
from electra.pretraining.setup import build_model
from electra.pretraining.stats import STAT_NAMES
from electra.pretraining.step import learning_rate, phase_at, schedule_position
from electra.pretraining.variants import GradientDisentangledEmbedding
from electra.runtime.checkpoint import checkpoint_dirs, load_run_config

SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
DISC = ModelConfig(vocab_size=97, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0)
GEN = dataclasses.replace(DISC, hidden_size=16, num_attention_heads=1, intermediate_size=32)


def _masked(B=8, T=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 97, (B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    attn = (torch.arange(T)[None] < lengths[:, None]).long()
    ids[:, 0] = SPECIAL["cls"]
    ids[torch.arange(B), lengths - 1] = SPECIAL["sep"]
    ids[attn == 0] = SPECIAL["pad"]
    return mask_batch(ids, attn, torch.zeros_like(ids), torch.arange(100, 100 + B), SPECIAL, 0.15, 0.85, 0)


def _model(sharing="none", gen=GEN, disc=DISC, seed=0):
    torch.manual_seed(seed)
    return ElectraPretrainer(disc, gen, "electra", sharing)


def _run(model, mb, seed=0, disc_weight=50.0, phase="joint", baseline=None):
    return model(mb, seed, disc_weight, mb.valid.sum(), mb.attention_mask.sum(), phase, baseline)


def _stats(stats):
    return dict(zip(STAT_NAMES, stats.tolist()))


def _gen_logits(model, mb):
    return model.generator(mb.generator_input_ids, mb.attention_mask, mb.token_type_ids, positions=mb.positions)


# --------------------------------------------------------------------------- two-stage

def test_two_stage_stage_one_trains_the_generator_alone_and_never_runs_the_discriminator():
    model = _model()
    calls = []
    model.discriminator.register_forward_hook(lambda *a: calls.append(1))
    mb = _masked()
    loss, stats = _run(model, mb, phase="generator")
    loss.backward()
    assert not calls  # not run at all
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert all(p.grad is not None for p in model.generator.parameters())
    s = _stats(stats)
    assert s["disc_loss_sum"] == s["disc_terms"] == s["num_replaced"] == 0 and s["num_selected"] == mb.valid.sum()
    # The loss is exactly the generator's MLM cross-entropy at the selected positions.
    targets = mb.input_ids.gather(1, mb.positions)
    expected = F.cross_entropy(_gen_logits(model, mb)[mb.valid], targets[mb.valid])
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    assert _run(model, mb, disc_weight=0.0, phase="generator")[0].item() == loss.item()  # lambda plays no part


def test_two_stage_stage_two_freezes_the_generator():
    with_dropout = dataclasses.replace(DISC, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model = _model(disc=with_dropout, gen=dataclasses.replace(GEN, hidden_dropout_prob=0.1)).train()
    seen, logits = [], []
    model.generator.register_forward_hook(lambda m, a, o: seen.append((m.training, torch.is_grad_enabled())))
    model.generator.register_forward_hook(lambda m, a, o: logits.append(o.detach()))
    mb = _masked()
    loss, stats = _run(model, mb, phase="discriminator")
    loss.backward()
    assert seen == [(False, False)]  # eval mode (no dropout), no autograd graph ...
    assert model.generator.training  # ... and its mode is given back
    assert all(p.grad is None for p in model.generator.parameters())  # AdamW skips it: no update, no decay
    assert all(p.grad is not None for p in model.discriminator.parameters())
    # The loss is lambda times the discriminator's BCE alone, over every real token.
    s = _stats(stats)
    torch.testing.assert_close(loss.detach(), torch.tensor(50.0 * s["disc_loss_sum"] / s["num_tokens"]), rtol=1e-5,
                               atol=1e-6)
    # The frozen generator is a fixed function: the same logits (so the same keyed samples) every time ...
    _run(model, mb, phase="discriminator")
    assert torch.equal(logits[0], logits[1])
    _run(model, mb)
    _run(model, mb)
    assert not torch.equal(logits[2], logits[3])  # ... while a training generator's dropout changes them


def _perturb(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g))


def test_switch_initialises_the_discriminator_from_the_generator_where_shapes_allow():
    # Equal sizes (the paper's two-stage setup): the whole encoder.
    model = _model(gen=DISC)
    _perturb(model.generator)  # a trained generator, unlike the fresh discriminator
    head = {k: v.clone() for k, v in model.discriminator.discriminator_predictions.state_dict().items()}
    copied, total = init_discriminator_from_generator(model)
    gen, disc = model.generator.electra.state_dict(), model.discriminator.electra.state_dict()
    assert copied == total == len(disc) and sorted(gen) == sorted(disc)
    for k in disc:
        assert torch.equal(disc[k], gen[k]), k
        assert disc[k].data_ptr() != gen[k].data_ptr()  # copies, not shared tensors
    for k, v in model.discriminator.discriminator_predictions.state_dict().items():
        assert torch.equal(v, head[k])  # the heads differ in kind: the discriminator keeps its own
    mb = _masked()
    h_gen = model.generator.electra(mb.input_ids, mb.attention_mask)
    torch.testing.assert_close(model.discriminator.electra(mb.input_ids, mb.attention_mask), h_gen)

    # A narrower generator: only the embedding-sized tensors match (tables and their LayerNorm).
    model = _model()
    _perturb(model.generator)
    before = {k: v.clone() for k, v in model.discriminator.electra.state_dict().items()}
    copied, total = init_discriminator_from_generator(model)
    after, gen = model.discriminator.electra.state_dict(), model.generator.electra.state_dict()
    same = {k for k in after if k in gen and gen[k].shape == after[k].shape}
    assert same == {f"embeddings.{n}" for n in ("word_embeddings.weight", "position_embeddings.weight",
                                                "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")}
    assert copied == 5 and total == len(after)
    for k in after:
        assert torch.equal(after[k], gen[k] if k in same else before[k]), k

    # GDES: the tables already read the generator's plus a delta, which the switch sets to zero.
    model = _model(sharing="gdes")
    with torch.no_grad():
        model.discriminator.electra.embeddings.word_embeddings.delta.fill_(0.25)
    init_discriminator_from_generator(model)
    emb, gen_emb = model.discriminator.electra.embeddings, model.generator.electra.embeddings
    assert isinstance(emb.word_embeddings, GradientDisentangledEmbedding)
    assert torch.equal(emb.word_embeddings.weight, gen_emb.word_embeddings.weight)
    assert torch.equal(emb.LayerNorm.weight, gen_emb.LayerNorm.weight)


def test_two_stage_phases_and_a_schedule_per_stage():
    t = TrainConfig(algorithm="two_stage", max_steps=10, warmup_steps=2, learning_rate=1.0)
    assert t.two_stage_switch_step() == 5  # 0 = half of max_steps
    assert [phase_at(s, t) for s in range(10)] == ["generator"] * 5 + ["discriminator"] * 5
    lrs = [learning_rate(*schedule_position(s, t)) for s in range(10)]
    one_stage = [learning_rate(s, dataclasses.replace(t, max_steps=5)) for s in range(5)]
    assert lrs == one_stage + one_stage  # warm-up and decay restart at the switch
    t = dataclasses.replace(t, two_stage_generator_steps=3)
    assert [phase_at(s, t) for s in range(10)].count("generator") == 3
    joint = TrainConfig(max_steps=10, warmup_steps=2)
    assert schedule_position(7, joint) == (7, joint) and phase_at(7, joint) == "joint"


# --------------------------------------------------------------------------- adversarial

def test_adversarial_gradient_is_reward_minus_baseline_times_grad_log_prob():
    model = _model().train()
    captured = {}

    def keep_gen(module, args, kwargs, out):
        out.retain_grad()
        captured["gen"] = out

    model.generator.register_forward_hook(keep_gen, with_kwargs=True)
    model.discriminator.register_forward_hook(lambda m, a, o: captured.update(disc=o, fed=a[0]))
    mb = _masked()
    loss, stats = _run(model, mb, phase="adversarial", baseline=torch.tensor(0.3))
    loss.backward()
    gen, B, P = captured["gen"], *mb.positions.shape
    sampled = captured["fed"].gather(1, mb.positions)  # what the discriminator was shown: the Gumbel-max samples
    assert torch.equal(sampled[mb.valid], gumbel_sample(gen, mb.keys[:, None].expand(B, P), mb.positions, 0)[mb.valid])
    labels = (captured["fed"] != mb.input_ids).float()
    # Reward: the discriminator's BCE at the sampled position: -log P(replaced) for a replacement, -log P(original)
    # for a correct guess.
    logit = captured["disc"].detach().gather(1, mb.positions)
    label = labels.gather(1, mb.positions)
    reward = torch.where(label.bool(), -F.logsigmoid(logit), -F.logsigmoid(-logit))
    assert 0 < label[mb.valid].mean() < 1  # both cases occur
    n = mb.valid.sum()
    # d loss / d logits = -(R - b) (onehot(sample) - softmax) / n at valid slots, 0 elsewhere.
    onehot = F.one_hot(sampled, DISC.vocab_size).float()
    expected = -((reward - 0.3) * mb.valid.float())[..., None] * (onehot - gen.detach().softmax(-1)) / n
    torch.testing.assert_close(gen.grad, expected, rtol=1e-4, atol=1e-7)
    s = _stats(stats)
    assert s["reward_terms"] == n
    torch.testing.assert_close(torch.tensor(s["reward_sum"]), (reward * mb.valid).sum(), rtol=1e-5, atol=1e-6)
    # No MLM term: the generator's gradient is the policy gradient alone (with sharing none, gen logits are its
    # only path), and the discriminator still trains on its BCE.
    assert all(p.grad is not None for p in model.discriminator.parameters())


class _FixedDiscriminator(nn.Module):
    """Catches token A (sure it is replaced), misses token B (sure it is original), unsure of everything else."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None):
        return torch.where(input_ids == self.a, 6.0, torch.where(input_ids == self.b, -6.0, 0.0))  # (B, T)


def test_adversarial_updates_move_the_generator_toward_tokens_the_discriminator_misses():
    A, B = 50, 60
    model = _model().train()
    model.discriminator = _FixedDiscriminator(A, B)
    baseline = RewardBaseline()
    with torch.no_grad():
        model.generator.generator_lm_head.bias[[A, B]] = 4.0  # both likely at first: ~38% each
    optimizer = torch.optim.Adam(model.generator.parameters(), lr=1e-2)
    mb = _masked(B=16)

    def log_probs():
        with torch.no_grad():
            lp = _gen_logits(model, mb).log_softmax(-1)[mb.valid]  # (M, V)
        return lp[:, A].mean().item(), lp[:, B].mean().item()

    a0, b0 = log_probs()
    rewards = []
    for step in range(8):
        loss, stats = _run(model, mb, seed=step, phase="adversarial", baseline=baseline.value())  # new keyed noise
        optimizer.zero_grad()  # each step: new samples
        loss.backward()
        optimizer.step()
        baseline.update(stats[STAT_NAMES.index("reward_sum")], stats[STAT_NAMES.index("reward_terms")])
        s = _stats(stats)
        rewards.append(s["reward_sum"] / s["reward_terms"])
    a1, b1 = log_probs()
    assert (b1 - a1) - (b0 - a0) > 1.0  # B, which fools the discriminator, is now much likelier than A ...
    assert b1 > b0 and a1 < a0  # ... B gained and A lost
    assert rewards[-1] > rewards[0]  # and the generator fools the discriminator more often


def test_reward_baseline_is_a_bias_corrected_moving_average_and_round_trips_through_state_json():
    b = RewardBaseline(decay=0.9)
    assert b.value().item() == 0.0  # no baseline before the first step
    b.update(torch.tensor(6.0), torch.tensor(3.0))  # mean 2
    assert b.value().item() == pytest.approx(2.0)  # the first mean at full weight
    b.update(torch.tensor(4.0), torch.tensor(1.0))  # mean 4
    assert b.value().item() == pytest.approx((0.9 * 0.1 * 2 + 0.1 * 4) / (0.9 * 0.1 + 0.1))
    b.ema.copy_(torch.tensor([0.123456789, 0.987654321]))
    state = json.loads(json.dumps(algorithm_state(b)))
    fresh = RewardBaseline()
    load_algorithm_state(fresh, state)
    assert torch.equal(fresh.ema, b.ema)  # bit for bit
    assert algorithm_state(None) == {}  # the other algorithms keep nothing
    # The module holds the networks only: the baseline and the phase are the run's.
    model = _model()
    assert not hasattr(model, "reward_baseline") and not hasattr(model, "phase")
    with pytest.raises(ValueError, match="reward baseline"):
        _run(model, _masked(), phase="adversarial")


# --------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("overrides,message", [
    (["train.algorithm=gan"], "is not one of joint, two_stage, adversarial"),
    (["train.algorithm=two_stage", "train.objective=mlm", "generator.sharing=embeddings"],
     "valid objectives with it: electra, electra15"),
    (["train.algorithm=adversarial", "train.objective=replace_mlm"], "valid objectives with it: electra, electra15"),
    (["train.algorithm=two_stage"], "valid generator.sharing with it: none, gdes (got embeddings)"),
    (["train.algorithm=two_stage", "generator.sharing=all", "generator.hidden_fraction=1",
      "generator.layers_fraction=1"], "valid generator.sharing with it: none, gdes"),
    (["train.algorithm=adversarial", "generator.sharing=all", "generator.hidden_fraction=1",
      "generator.layers_fraction=1"],
     "valid generator.sharing with it: embeddings, none, gdes"),
    (["train.two_stage_generator_steps=5"], "applies only with train.algorithm=two_stage"),
    (["train.algorithm=two_stage", "generator.sharing=none", "train.max_steps=10",
      "train.two_stage_generator_steps=10"], "must be below train.max_steps"),
])
def test_invalid_combinations_fail_at_config_validation(overrides, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_overrides(preset_config("tiny"), overrides)


def test_the_two_stage_message_says_what_the_switch_initialises():
    with pytest.raises(UserError, match="equal name and shape"):
        apply_overrides(preset_config("tiny"), ["train.algorithm=two_stage"])
    for ok in (["train.algorithm=two_stage", "generator.sharing=none", "generator.hidden_fraction=1"],
               ["train.algorithm=two_stage", "generator.sharing=gdes", "train.objective=electra15"],
               ["train.algorithm=adversarial"], ["train.algorithm=adversarial", "generator.sharing=gdes"]):
        apply_overrides(preset_config("tiny"), ok)


# --------------------------------------------------------------------------- end to end

SMALL = ["model.hidden_size=32", "model.embedding_size=24", "model.num_hidden_layers=2", "model.intermediate_size=64",
         "train.batch_size=8", "train.log_every=1", "train.eval_every=5", "train.save_every=3",
         "train.eval_examples=16", "generator.hidden_fraction=0.5"]
ALGORITHMS = {
    # the paper's two-stage setup: a generator as large as the discriminator, so the switch copies every tensor
    "two_stage": (["train.algorithm=two_stage", "generator.sharing=none", "generator.hidden_fraction=1",
                   "generator.layers_fraction=1"], [2, 3, 4]),
    "two_stage_gdes": (["train.algorithm=two_stage", "generator.sharing=gdes"], [3]),
    "adversarial": (["train.algorithm=adversarial"], [3]),
    "joint": ([], [3]),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("d") / "data")


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _losses(run):
    return {r["step"]: (r["gen_loss"], r["disc_loss"], r.get("reward", 0.0)) for r in _records(run) if "gen_loss" in r}


def _weights(ckpt, prefix):
    return {k: v for k, v in load_file(str(ckpt / "model.safetensors")).items() if k.startswith(prefix)}


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_algorithm_pretrains_resumes_exactly_and_exports(name, data, tmp_path):
    transformers = pytest.importorskip("transformers")
    extra, stops = ALGORITHMS[name]
    overrides = SMALL + extra
    full = pretrain(data, tmp_path / "full", preset="tiny", max_steps=6, overrides=overrides, progress=False)
    a = _losses(full)
    assert sorted(a) == list(range(1, 7))
    for stop in stops:  # two_stage (switch at 3): before the switch, at it (the copy happens on resume), after it
        run = tmp_path / f"stop{stop}"
        pretrain(data, run, preset="tiny", max_steps=6, overrides=overrides + [f"train.stop_at={stop}"], progress=False)
        pretrain(data, run, resume=True, progress=False)
        b = _losses(run)
        assert sorted(b) == list(range(1, 7))
        for step in range(1, 7):
            assert max(abs(x - y) for x, y in zip(a[step], b[step])) <= 1e-5, (stop, step, a[step], b[step])
        switches = [r for r in _records(run) if r.get("event") == "two_stage_switch"]
        assert len(switches) == (name.startswith("two_stage"))  # logged once, even when redone on resume

    cfg = load_run_config(full)
    records = [r for r in _records(full) if "gen_loss" in r]
    if name.startswith("two_stage"):
        assert cfg.train.two_stage_generator_steps == 3  # "half of max_steps", pinned in config.json
        # Stage one: no discriminator loss; stage two: the generator's MLM no longer improves by training.
        assert all(r["disc_loss"] == 0 for r in records[:3]) and all(r["disc_loss"] > 0 for r in records[3:])
        assert records[3]["lr"] == records[0]["lr"]  # the schedule restarts at the switch
        switch = [r for r in _records(full) if r.get("event") == "two_stage_switch"][0]
        assert switch["step"] == 4 and switch["generator_steps"] == 3
        if name == "two_stage":
            assert switch["copied_tensors"] == switch["discriminator_encoder_tensors"] > 20
        else:
            assert switch["copied_tensors"] == 2  # gdes: the embedding LayerNorm (the tables read the generator's)
        # Checkpoints at steps 3 (before the switch) and 6: the generator is unchanged by stage two, the
        # discriminator untouched by stage one (still its initial weights) and trained in stage two.
        ck3, ck6 = checkpoint_dirs(full)
        assert (ck3.name, ck6.name) == ("step-00000003", "step-00000006")
        g3, g6 = _weights(ck3, "generator."), _weights(ck6, "generator.")
        assert g3.keys() == g6.keys() and all(torch.equal(g3[k], g6[k]) for k in g3)
        torch.manual_seed(cfg.train.seed)
        initial = {f"discriminator.{k}": v for k, v in build_model(cfg).discriminator.state_dict().items()}
        d3, d6 = _weights(ck3, "discriminator."), _weights(ck6, "discriminator.")
        assert all(torch.equal(d3[k], initial[k]) for k in d3)
        assert any(not torch.equal(d3[k], d6[k]) for k in d3)
    elif name == "adversarial":
        assert all(r["reward"] > 0 for r in records) and records[0]["reward_baseline"] > 0
        state = json.loads((checkpoint_dirs(full)[-1] / "state.json").read_text())
        assert len(state["reward_baseline"]) == 2 and state["reward_baseline"][1] > 0
        g3, g6 = (_weights(c, "generator.") for c in checkpoint_dirs(full))
        assert any(not torch.equal(g3[k], g6[k]) for k in g3)  # REINFORCE trains the generator
    else:
        assert cfg.train.algorithm == "joint" and "reward" not in records[0]

    disc_dir, gen_dir = export_run(full, tmp_path / "hf")
    hf = transformers.ElectraForPreTraining.from_pretrained(disc_dir).eval()
    transformers.ElectraForMaskedLM.from_pretrained(gen_dir)
    _, encoder, _ = load_encoder_source(full)
    for k, v in encoder.items():
        torch.testing.assert_close(v, hf.state_dict()[k])


def test_two_stage_flops_budget_counts_each_stage_at_its_own_cost(data, tmp_path):
    from electra.pretraining.flops import training_flops_per_step

    overrides = SMALL + ALGORITHMS["two_stage_gdes"][0]
    cfg = apply_overrides(preset_config("tiny", vocab_size=120), overrides + ["train.max_steps=8"])
    per = training_flops_per_step(cfg, 32)
    assert per["stage_one"] < per["stage_two"] and per["train"] == (per["stage_one"] + per["stage_two"]) / 2
    budget = 4 * per["stage_one"] + 4 * per["stage_two"] + 0.5 * per["stage_one"]  # 8 steps fit, 9 do not
    run = pretrain(data, tmp_path / "run", preset="tiny", progress=False,
                   overrides=overrides + [f"train.flops_budget={budget}"])
    cfg = load_run_config(run)
    assert cfg.train.max_steps == 8 and cfg.train.two_stage_generator_steps == 4
    flops = [r["flops"] for r in _records(run) if "gen_loss" in r]
    assert flops == [min(s, 4) * per["stage_one"] + max(0, s - 4) * per["stage_two"] for s in range(1, 9)]
    assert flops[-1] <= budget
