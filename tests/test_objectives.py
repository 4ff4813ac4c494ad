"""Unit tests of the replaced-token-detection objective (docs/design.md, "ELECTRA as specified")."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from electra.config import ModelConfig, TrainConfig, preset_config
from electra.pretraining.batches import keyed_uniform, mask_batch, select_positions, selected_mask
from electra.pretraining.objective import ElectraPretrainer, gumbel_sample, replaced_labels
from electra.pretraining.setup import parameter_groups
from electra.pretraining.stats import summarise_stats
from electra.pretraining.step import learning_rate

SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
DISC = ModelConfig(vocab_size=97, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0)
GEN = dataclasses.replace(DISC, hidden_size=16, num_attention_heads=1, intermediate_size=32)


def _batch(B=8, T=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 97, (B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    attn = (torch.arange(T)[None] < lengths[:, None]).long()
    ids[:, 0] = SPECIAL["cls"]
    ids[torch.arange(B), lengths - 1] = SPECIAL["sep"]
    ids[attn == 0] = SPECIAL["pad"]
    types = torch.zeros_like(ids)
    return ids, attn, types, torch.arange(100, 100 + B)


def test_keyed_uniform_is_uniform_deterministic_and_key_dependent():
    keys = torch.arange(200_000)
    u = keyed_uniform(7, 1, keys)
    assert u.dtype == torch.float32 and 0 < u.min() and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002
    hist = torch.histc(u, bins=10, min=0, max=1) / len(u)
    assert (hist - 0.1).abs().max() < 0.005
    assert torch.equal(u, keyed_uniform(7, 1, keys))
    assert not torch.equal(u, keyed_uniform(8, 1, keys))
    # neighbouring keys are uncorrelated
    assert abs(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].item()) < 0.01


def test_selection_counts_candidates_and_uniformity():
    ids, attn, _, keys = _batch(B=64, T=50)
    candidates = attn.bool() & ~torch.isin(ids, torch.tensor([0, 2, 3, 4]))
    positions, valid = select_positions(candidates, 0.15, keys, seed=1)
    assert positions.shape == valid.shape == (64, round(50 * 0.15))  # static width P
    sel = selected_mask(positions, valid, 50)
    assert not (sel & ~candidates).any()  # never specials or padding
    assert all(len(set(row.tolist())) == len(row) for row in positions)  # distinct slots, safe to scatter
    n = candidates.sum(1).float()
    assert torch.equal(sel.sum(1), torch.clamp((n * 0.15).round().long(), min=1))
    # Over many keys every candidate position is chosen at the same rate.
    full = torch.ones(20_000, 20, dtype=torch.bool)
    rate = selected_mask(*select_positions(full, 0.15, torch.arange(20_000), seed=3), 20).float().mean(0)
    assert (rate - 3 / 20).abs().max() < 0.01


def test_masked_fraction_is_85_percent_and_others_unchanged():
    ids, attn, types, _ = _batch(B=256, T=64)
    mb = mask_batch(ids, attn, types, torch.arange(256), SPECIAL, 0.15, 0.85, seed=5)
    masked = mb.generator_input_ids == SPECIAL["mask"]
    assert not (masked & ~mb.selected).any()
    assert torch.equal(mb.generator_input_ids[~masked], ids[~masked])  # no random replacement
    frac = masked.sum().item() / mb.selected.sum().item()
    assert abs(frac - 0.85) < 0.03
    sel_frac = mb.selected.sum().item() / (attn.sum() - 2 * 256).item()
    assert abs(sel_frac - 0.15) < 0.01


def test_masking_depends_only_on_the_example_key():
    ids, attn, types, keys = _batch(B=6)
    a = mask_batch(ids, attn, types, keys, SPECIAL, 0.15, 0.85, seed=9)
    b = mask_batch(ids[3:], attn[3:], types[3:], keys[3:], SPECIAL, 0.15, 0.85, seed=9)
    assert torch.equal(a.selected[3:], b.selected) and torch.equal(a.generator_input_ids[3:], b.generator_input_ids)


def test_gumbel_sampling_matches_softmax_in_float32():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, -30.0])
    M = 100_000
    draws = gumbel_sample(logits.expand(M, -1).to(torch.bfloat16), torch.arange(M), torch.zeros(M, dtype=torch.long), 0)
    assert draws.shape == (M,)
    freq = torch.bincount(draws, minlength=5).float() / M
    expected = torch.softmax(logits.to(torch.bfloat16).float(), -1)
    assert (freq - expected).abs().max() < 0.006
    assert freq[4] == 0


def test_gumbel_sampling_with_huge_bf16_logits_gives_no_nan():
    logits = torch.full((4, 50), 3e38).to(torch.bfloat16)
    out = gumbel_sample(logits, torch.arange(4), torch.arange(4), 0)
    assert ((out >= 0) & (out < 50)).all()


def test_correct_guess_is_labelled_original():
    original = torch.tensor([[2, 10, 11, 12, 3, 0]])
    corrupted = torch.tensor([[2, 10, 99, 12, 3, 0]])  # position 1 was selected but guessed right
    attn = torch.tensor([[1, 1, 1, 1, 1, 0]])
    assert replaced_labels(original, corrupted, attn).tolist() == [[0, 0, 1, 0, 0, 0]]


def _model(seed=0):
    torch.manual_seed(seed)
    return ElectraPretrainer(DISC, GEN).eval()


def test_lm_head_sees_only_selected_positions():
    model = _model()
    seen = []
    model.generator.generator_lm_head.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    ids, attn, types, keys = _batch(B=8, T=40)
    mb = mask_batch(ids, attn, types, keys, SPECIAL, 0.15, 0.85, seed=0)
    model(mb, 0, 50.0, mb.valid.sum(), attn.sum())
    # The V-way head runs on P = round(0.15 * T) slots per row, not on all T positions ...
    assert seen[0].shape == (8, 6, DISC.embedding_size)
    # ... and those slots are the hidden states at exactly the selected positions.
    gen = model.generator
    full = gen.generator_predictions(gen.electra(mb.generator_input_ids, attn, types))  # (B, T, E)
    rows = torch.arange(8)[:, None].expand_as(mb.positions)
    torch.testing.assert_close(seen[0][mb.valid], full[rows[mb.valid], mb.positions[mb.valid]])


def test_embeddings_are_shared_and_the_rest_is_not():
    model = _model()
    assert model.generator.electra.embeddings is model.discriminator.electra.embeddings
    assert model.generator.generator_lm_head.weight is model.discriminator.electra.embeddings.word_embeddings.weight
    disc_params = {id(p) for p in model.discriminator.parameters()}
    shared = [n for n, p in model.generator.named_parameters() if id(p) in disc_params]
    assert all(n.startswith("electra.embeddings.") for n in shared) and shared


@pytest.mark.parametrize("objective", ["electra", "mlm"])
def test_corrupted_stats_leave_out_the_selected_tokens_kept_in_place(objective):
    torch.manual_seed(0)
    model = ElectraPretrainer(DISC, GEN, objective=objective).eval()
    ids, attn, types, keys = _batch(B=8, T=40)
    # Half the selected tokens stay in place; with mlm 20% of the rest become random tokens (BERT-like)
    mb = mask_batch(ids, attn, types, keys, SPECIAL, 0.15, 0.5, seed=0,
                    random_token_prob=0.2 if objective == "mlm" else 0.0, vocab_size=DISC.vocab_size)
    out = summarise_stats(model(mb, 0, 50.0, mb.valid.sum(), attn.sum())[1])

    masked_lm = model.generator if objective == "electra" else model.discriminator
    logits = masked_lm(mb.generator_input_ids, attn, types, positions=mb.positions)  # (B, P, V)
    targets = ids.gather(1, mb.positions)
    fed = mb.generator_input_ids.gather(1, mb.positions)
    corrupted, kept = (fed != targets) & mb.valid, (fed == targets) & mb.valid
    assert corrupted.sum() > 0 and kept.sum() > 0
    if objective == "mlm":
        assert ((fed != SPECIAL["mask"]) & corrupted).any()  # random tokens count as corrupted too
    assert out["corrupted_loss"] == pytest.approx(F.cross_entropy(logits[corrupted], targets[corrupted]).item(),
                                                  rel=1e-5)
    accuracy = (logits[corrupted].argmax(-1) == targets[corrupted]).float().mean()
    assert out["corrupted_acc"] == pytest.approx(accuracy.item())
    # The overall masked-LM loss also averages over the kept tokens, so it differs
    overall = out["gen_loss"] if objective == "electra" else out["mlm_loss"]
    assert overall == pytest.approx(F.cross_entropy(logits[mb.valid], targets[mb.valid]).item(), rel=1e-5)
    assert abs(overall - out["corrupted_loss"]) > 1e-3


def _grads(model, mb, disc_weight, micro=1):
    model.zero_grad()
    n_sel, n_tok = mb.valid.sum(), mb.attention_mask.sum()
    for part in mb.split(micro):
        loss, _ = model(part, 0, disc_weight, n_sel, n_tok)
        loss.backward()
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def test_discriminator_loss_reaches_the_generator_only_through_shared_embeddings():
    model = _model()
    ids, attn, types, keys = _batch()
    mb = mask_batch(ids, attn, types, keys, SPECIAL, 0.15, 0.85, seed=0)
    with_disc, mlm_only = _grads(model, mb, 50.0), _grads(model, mb, 0.0)
    for name in with_disc:
        diff = (with_disc[name] - mlm_only[name]).abs().max().item()
        if name.startswith("generator.") and "embeddings" not in name:
            assert diff == 0.0, name  # no path through the sampled tokens
    emb = "discriminator.electra.embeddings.word_embeddings.weight"
    assert (with_disc[emb] - mlm_only[emb]).abs().max() > 0  # but the shared embeddings learn from both


def test_micro_batch_split_gives_the_full_batch_gradient():
    model = _model()
    ids, attn, types, keys = _batch(B=8)
    mb = mask_batch(ids, attn, types, keys, SPECIAL, 0.15, 0.85, seed=0)
    full, split = _grads(model, mb, 50.0, 1), _grads(model, mb, 50.0, 4)
    for name in full:
        torch.testing.assert_close(split[name], full[name], rtol=1e-4, atol=1e-6)


def test_parameter_groups_exclude_bias_and_layernorm_and_count_shared_once():
    model = _model()
    decay, no_decay = parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("bias" not in names[id(p)] and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    all_ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(all_ids) == len(set(all_ids)) == len({id(p) for p in model.parameters()})
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


def test_learning_rate_warms_up_then_decays_linearly_to_zero():
    cfg = TrainConfig(learning_rate=1e-3, warmup_steps=10, max_steps=100)
    lrs = [learning_rate(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3 * 0.1 * 1.0)
    assert lrs[9] == pytest.approx(1e-3 * 1.0 * 0.91)
    assert max(lrs) == lrs[9]
    assert lrs[50] == pytest.approx(1e-3 * 0.5)
    assert lrs[99] == pytest.approx(1e-3 * 0.01) and all(lr > 0 for lr in lrs)
    assert all(math.isclose(lrs[s] - lrs[s + 1], 1e-5) for s in range(10, 98))


def test_discriminator_starts_at_the_replaced_prior():
    model = ElectraPretrainer(DISC, GEN, replaced_prior=0.15)
    bias = model.discriminator.discriminator_predictions.dense_prediction.bias
    assert bias.item() == pytest.approx(math.log(0.15 / 0.85))
    # electra15 scores only the selected positions (nearly all replaced at first): no prior from mask_prob
    other = ElectraPretrainer(DISC, GEN, objective="electra15", replaced_prior=0.15)
    assert other.discriminator.discriminator_predictions.dense_prediction.bias.item() == 0.0


def _detection_gain(prior: float | None, steps: int = 80) -> float:
    """Train the ``tiny`` preset's discriminator alone to spot uniformly random replacements in Zipf-distributed
    tokens; returns the label entropy minus its loss (nats) over the last 20 steps: 0 = it predicts the base rate."""
    torch.manual_seed(0)
    cfg = preset_config("tiny", vocab_size=2000).model
    small = dataclasses.replace(cfg, hidden_size=32, num_attention_heads=1, intermediate_size=128)
    model = ElectraPretrainer(cfg, small, replaced_prior=prior).discriminator
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-6)
    zipf = 1.0 / torch.arange(1, 1996).float()  # token 5 + k has frequency ~ 1 / (k + 1)
    gains = []
    for step in range(steps):
        ids = 5 + torch.multinomial(zipf, 16 * 64, replacement=True).view(16, 64)
        replaced = torch.rand(ids.shape) < 0.15
        corrupted = torch.where(replaced, torch.randint(5, 2000, ids.shape), ids)
        labels = (corrupted != ids).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(corrupted), labels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        p = labels.mean().item()
        gains.append(-(p * math.log(p) + (1 - p) * math.log(1 - p)) - loss.item())
    return sum(gains[-20:]) / 20


@pytest.mark.slow
def test_prior_initialised_discriminator_learns_where_a_zero_bias_one_stalls():
    """The regression behind init_replaced_prior: from Google's zero bias the tiny discriminator collapses to the
    base rate (on real text for thousands of steps), from the prior it detects rare, out-of-place tokens at once."""
    assert _detection_gain(None) < 0.01
    assert _detection_gain(0.15) > 0.05


def test_every_use_of_the_keyed_hash_has_its_own_salt():
    # Two uses sharing a salt would draw the same numbers (selection would correlate with the [MASK] choice), so
    # all salts live in batches.py (its keyed randomness), distinct, and no other module defines one.
    import ast
    from pathlib import Path

    from electra.pretraining import batches
    salts = {name: value for name, value in vars(batches).items() if name.startswith("SALT_")}
    assert len(salts) == 8 and len(set(salts.values())) == len(salts)
    package = Path(batches.__file__).parent
    for path in package.glob("*.py"):
        if path.name == "batches.py":
            continue
        assigned = {t.id for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Assign)
                    for target in node.targets for t in ast.walk(target) if isinstance(t, ast.Name)}
        assert not [n for n in assigned if "SALT" in n], path.name


def test_every_objective_and_phase_has_a_registered_step():
    """forward looks its step up, it does not branch: every train.objective and every phase but joint has one."""
    from electra.config import OBJECTIVES
    from electra.pretraining.algorithms import PHASE_STEPS, PHASES
    from electra.pretraining.objective import OBJECTIVE_STEPS

    assert set(OBJECTIVE_STEPS) == set(OBJECTIVES)
    assert set(PHASE_STEPS) == set(PHASES) - {"joint"}
