"""The paper's ablations as options: objectives, weight sharing, masking.

One test per defining rule, then every option end to end (pre-train, exact resume, export, fine-tuning source).
"""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from synthetic import SMALL_RUN as SMALL
from synthetic import SPECIAL_IDS, make_data_dir

from electra.config import ModelConfig, apply_overrides, preset_config
from electra.errors import UserError
from electra.interop.hf import load_hf_state
from electra.model import ElectraForMaskedLM, ElectraForPreTraining
from electra.pretraining.batches import (BERT_MASK_TOKEN_PROB, BERT_RANDOM_TOKEN_PROB, keyed_uniform, mask_batch,
                                         max_selected, selected_mask)
from electra.pretraining.export import export_run, load_encoder_source, load_pretrainer_from_hf
from electra.pretraining.objective import ElectraPretrainer, gumbel_sample
from electra.pretraining.pretrain import pretrain
from electra.pretraining.setup import build_model
from electra.pretraining.stats import STAT_NAMES
from electra.pretraining.variants import GradientDisentangledEmbedding, copy_mixture_log_prob, exportable
from electra.pretraining.word_masking import (continuation_flags, make_selector, span_lengths, span_positions,
                                              whole_word_positions, word_starts)
from electra.runtime.checkpoint import load_run_config

SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
DISC = ModelConfig(vocab_size=97, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0)
GEN = dataclasses.replace(DISC, hidden_size=16, num_attention_heads=1, intermediate_size=32)


def _batch(B=8, T=40, seed=0, vocab=97):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (B, T), generator=g)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    attn = (torch.arange(T)[None] < lengths[:, None]).long()
    ids[:, 0] = SPECIAL["cls"]
    ids[torch.arange(B), lengths - 1] = SPECIAL["sep"]
    ids[attn == 0] = SPECIAL["pad"]
    return ids, attn, torch.zeros_like(ids), torch.arange(100, 100 + B)


def _masked(B=8, T=40, bert=False, select=None):
    ids, attn, types, keys = _batch(B, T)
    if bert:
        return mask_batch(ids, attn, types, keys, SPECIAL, 0.15, BERT_MASK_TOKEN_PROB, 0, select=select,
                          random_token_prob=BERT_RANDOM_TOKEN_PROB, vocab_size=DISC.vocab_size)
    return mask_batch(ids, attn, types, keys, SPECIAL, 0.15, 0.85, 0, select=select)


def _model(objective="electra", sharing="embeddings", gen=GEN, seed=0):
    torch.manual_seed(seed)
    return ElectraPretrainer(DISC, gen, objective, sharing).eval()


def _run(model, mb, disc_weight=50.0):
    return model(mb, 0, disc_weight, mb.valid.sum(), mb.attention_mask.sum())


def _stats(stats):
    return dict(zip(STAT_NAMES, stats.tolist()))


# --------------------------------------------------------------------------- objectives

def test_mlm_never_computes_a_discriminator_loss():
    model = _model("mlm")
    assert model.generator is None  # BERT: one network ...
    assert isinstance(model.discriminator, ElectraForMaskedLM)  # ... discriminator-sized, a masked LM
    assert not hasattr(model.discriminator, "discriminator_predictions")  # no replaced-token head at all
    mb = _masked(bert=True)
    loss, stats = _run(model, mb)
    s = _stats(stats)
    assert s["disc_loss_sum"] == s["disc_terms"] == s["mlm_loss_sum"] == 0 and s["model_mlm_terms"] == mb.valid.sum()
    # The loss is exactly the cross-entropy of the masked LM at the selected positions, fed BERT's input.
    logits = model.discriminator(mb.generator_input_ids, mb.attention_mask, mb.token_type_ids)  # (B, T, V)
    rows = torch.arange(mb.input_ids.shape[0])[:, None].expand_as(mb.positions)
    picked = logits[rows[mb.valid], mb.positions[mb.valid]]
    expected = F.cross_entropy(picked, mb.input_ids[rows[mb.valid], mb.positions[mb.valid]])
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_run(model, mb, disc_weight=0.0)[0], loss)  # lambda plays no part


def test_mlm_corruption_is_80_10_10():
    ids, attn, types, _ = _batch(B=2048, T=64)
    mb = mask_batch(ids, attn, types, torch.arange(2048), SPECIAL, 0.15, BERT_MASK_TOKEN_PROB, seed=5,
                    random_token_prob=BERT_RANDOM_TOKEN_PROB, vocab_size=97)
    sel, inp = mb.selected, mb.generator_input_ids
    assert torch.equal(inp[~sel], ids[~sel])  # only selected tokens change
    n = sel.sum().item()
    masked = ((inp == SPECIAL["mask"]) & sel).sum().item() / n
    changed = ((inp != SPECIAL["mask"]) & (inp != ids) & sel).sum().item() / n
    kept = ((inp == ids) & sel).sum().item() / n
    assert n > 12000
    assert abs(masked - 0.8) < 0.02
    assert abs(changed - 0.1 * 96 / 97) < 0.012  # a random token equals the original 1 time in V
    assert abs(kept - (0.1 + 0.1 / 97)) < 0.012
    random_ids = inp[sel & (inp != SPECIAL["mask"]) & (inp != ids)]
    assert random_ids.min() >= 0 and random_ids.max() < 97 and len(random_ids.unique()) > 80  # the whole vocabulary


@pytest.mark.parametrize("objective,corruption,masked,random_share", [
    ("mlm", "auto", 0.80, 0.10), ("electra", "auto", 0.85, 0.0),
    ("electra", "bert", 0.80, 0.10), ("mlm", "electra", 0.85, 0.0)])
def test_train_corruption_picks_the_masked_lm_input(objective, corruption, masked, random_share):
    from electra.config import TrainConfig
    from electra.pretraining.batches import masked_on_device
    ids, attn, types, _ = _batch(B=1024, T=64)
    batch = {"input_ids": ids, "attention_mask": attn, "token_type_ids": types, "keys": torch.arange(1024)}
    t = TrainConfig(objective=objective, corruption=corruption)
    t.validate()
    mb = masked_on_device(batch, SPECIAL, t, torch.device("cpu"), vocab_size=97)
    sel, inp = mb.selected, mb.generator_input_ids
    n = sel.sum().item()
    assert abs(((inp == SPECIAL["mask"]) & sel).sum().item() / n - masked) < 0.02
    assert abs(((inp != SPECIAL["mask"]) & (inp != ids) & sel).sum().item() / n - random_share * 96 / 97) < 0.012


def test_an_unknown_corruption_is_refused():
    from electra.config import TrainConfig
    with pytest.raises(UserError, match="train.corruption.*bert"):
        TrainConfig(corruption="roberta").validate()


def test_electra15_scores_the_discriminator_only_at_selected_positions():
    model = _model("electra15")
    mb = _masked()
    captured = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["logits"] = output

    model.discriminator.register_forward_hook(keep)
    loss, stats = _run(model, mb)
    loss.backward()
    grad = captured["logits"].grad  # (B, T): d loss / d discriminator logit
    sel = mb.selected
    assert (grad[~sel] == 0).all()  # no loss term anywhere else, padding and [CLS]/[SEP] included
    assert (grad[sel] != 0).all()
    s = _stats(stats)
    assert s["disc_terms"] == sel.sum().item() and s["num_tokens"] == mb.attention_mask.sum().item()
    # ELECTRA proper scores every real token.
    model = _model("electra")
    model.discriminator.register_forward_hook(keep)
    _run(model, mb)[0].backward()
    grad = captured["logits"].grad
    assert (grad[mb.attention_mask.bool()] != 0).all() and (grad[~mb.attention_mask.bool()] == 0).all()


def test_replace_mlm_feeds_generator_samples_not_mask_and_predicts_the_originals():
    model = _model("replace_mlm")
    assert isinstance(model.discriminator, ElectraForMaskedLM) and model.generator is not None
    mb = _masked()
    seen = {}
    model.discriminator.register_forward_hook(lambda m, args, kwargs, out: seen.update(ids=args[0], out=out),
                                              with_kwargs=True)
    loss, stats = _run(model, mb)
    fed, sel = seen["ids"], mb.selected
    assert torch.equal(fed[~sel], mb.input_ids[~sel])
    gen_logits = model.generator(mb.generator_input_ids, mb.attention_mask, mb.token_type_ids, positions=mb.positions)
    B, P = mb.positions.shape
    samples = gumbel_sample(gen_logits, mb.keys[:, None].expand(B, P), mb.positions, 0)
    assert torch.equal(fed.gather(1, mb.positions)[mb.valid], samples[mb.valid])  # the generator's samples ...
    assert (fed[sel] != SPECIAL["mask"]).float().mean() > 0.9  # ... not [MASK] (the generator may sample it)
    assert (mb.generator_input_ids[sel] == SPECIAL["mask"]).float().mean() > 0.7  # while the generator saw [MASK]
    # Loss: generator MLM + the masked LM's cross-entropy on the originals at the selected positions.
    targets = mb.input_ids.gather(1, mb.positions)
    w = mb.valid.float()

    def ce(logits):
        return (F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(B, P) * w).sum() / w.sum()
    torch.testing.assert_close(loss, ce(gen_logits) + ce(seen["out"]), rtol=1e-5, atol=1e-6)
    assert _stats(stats)["disc_terms"] == 0


def test_all_tokens_mlm_loss_is_the_copy_mixture_by_hand():
    logits = torch.tensor([[[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4], [-2.0, 3.0, 0.0, 1.0]]])  # (1, 3, V=4)
    copy_logits = torch.tensor([[1.5, -0.5, 0.0]])
    inputs = torch.tensor([[0, 3, 2]])
    targets = torch.tensor([[0, 1, 2]])  # copy, generate, copy
    got = copy_mixture_log_prob(logits, copy_logits, inputs, targets)
    expected = []
    for t in range(3):
        d = 1 / (1 + torch.exp(-copy_logits[0, t]))
        soft = torch.exp(logits[0, t]) / torch.exp(logits[0, t]).sum()
        p = d * float(inputs[0, t] == targets[0, t]) + (1 - d) * soft[targets[0, t]]
        expected.append(torch.log(p))
    torch.testing.assert_close(got[0], torch.stack(expected))

    model = _model("all_tokens_mlm")
    mb = _masked()
    seen = {}
    model.discriminator.register_forward_hook(lambda m, args, out: seen.update(ids=args[0], out=out))
    loss, stats = _run(model, mb)
    lg, cl = seen["out"]
    real = mb.attention_mask.bool()
    assert lg.shape[:2] == mb.input_ids.shape  # every position is predicted
    nll = -copy_mixture_log_prob(lg[real], cl[real], seen["ids"][real], mb.input_ids[real]).mean()
    s = _stats(stats)
    assert s["model_mlm_terms"] == real.sum().item()
    torch.testing.assert_close(torch.tensor(s["model_mlm_loss_sum"] / s["model_mlm_terms"]), nll.detach(), rtol=1e-5,
                               atol=1e-6)
    torch.testing.assert_close(loss, torch.tensor(s["mlm_loss_sum"] / s["num_selected"]) + nll, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- sharing

def _grads(model, mb, disc_weight):
    model.zero_grad()
    _run(model, mb, disc_weight)[0].backward()
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def test_gdes_discriminator_loss_gives_no_gradient_to_the_generator_embeddings():
    model = _model(sharing="gdes")
    emb = model.discriminator.electra.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        table = getattr(emb, name)
        assert isinstance(table, GradientDisentangledEmbedding)
        assert (table.delta == 0).all()  # the delta starts at zero ...
        assert torch.equal(table.weight, getattr(model.generator.electra.embeddings, name).weight)  # ... so D = G
    assert emb.LayerNorm is not model.generator.electra.embeddings.LayerNorm
    mb = _masked()
    with_disc, mlm_only = _grads(model, mb, 50.0), _grads(model, mb, 0.0)
    gen_tables = [n for n in with_disc
                  if n.startswith("generator.electra.embeddings.") and n.endswith("embeddings.weight")]
    assert len(gen_tables) == 3
    for name in gen_tables:
        assert torch.equal(with_disc[name], mlm_only[name]), name  # not one bit from the discriminator
    assert with_disc["generator.electra.embeddings.word_embeddings.weight"].abs().max() > 0  # the MLM trains it
    delta = "discriminator.electra.embeddings.word_embeddings.delta"
    assert with_disc[delta].abs().max() > 0 and mlm_only[delta].abs().max() == 0  # the delta learns from D only
    # Exported, the discriminator's table is the sum.
    with torch.no_grad():
        emb.word_embeddings.delta.add_(0.5)
    plain = exportable(model.discriminator)
    assert type(plain) is ElectraForPreTraining
    torch.testing.assert_close(plain.electra.embeddings.word_embeddings.weight,
                               model.generator.electra.embeddings.word_embeddings.weight + 0.5)
    torch.testing.assert_close(plain(mb.input_ids, mb.attention_mask),
                               model.discriminator(mb.input_ids, mb.attention_mask))


def test_sharing_none_keeps_every_tensor_separate():
    model = _model(sharing="none")
    disc = {id(p) for p in model.discriminator.parameters()}
    assert not any(id(p) in disc for p in model.generator.parameters())
    assert model.generator.generator_lm_head.weight is model.generator.electra.embeddings.word_embeddings.weight
    mb = _masked()
    g = _grads(model, mb, 50.0)
    assert torch.equal(g["generator.electra.embeddings.word_embeddings.weight"],
                       _grads(model, mb, 0.0)["generator.electra.embeddings.word_embeddings.weight"])


def test_sharing_all_shares_every_encoder_tensor():
    model = _model(sharing="all", gen=DISC)
    assert model.generator.electra is model.discriminator.electra
    disc = {id(p): n for n, p in model.discriminator.named_parameters()}
    for name, p in model.generator.named_parameters():
        if name.startswith("electra.") or name == "generator_lm_head.weight":
            assert id(p) in disc, name
        else:  # the heads cannot be shared: an MLM head and a replaced-token head
            assert name.startswith(("generator_predictions.", "generator_lm_head.bias")), name
    n_shared = sum(1 for p in model.generator.parameters() if id(p) in disc)
    assert n_shared == sum(1 for n in disc.values() if n.startswith("electra."))


@pytest.mark.parametrize("overrides,message", [
    (["generator.sharing=all"], "generator.hidden_fraction=1 and generator.layers_fraction=1"),
    (["generator.sharing=some"], "is not one of embeddings, none, all, gdes"),
    (["train.objective=bert"], "is not one of electra, mlm, electra15, replace_mlm, all_tokens_mlm"),
    (["train.masking=words"], "is not one of uniform, whole_word, span"),
    (["train.objective=mlm", "generator.sharing=none"], "has no generator"),
    (["train.objective=replace_mlm", "generator.sharing=gdes"], "valid objectives with it: electra, electra15"),
    (["train.span_p=0"], "train.span_p must be in (0, 1]"),
])
def test_invalid_combinations_fail_at_config_validation(overrides, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_overrides(preset_config("tiny"), overrides)
    cfg = apply_overrides(preset_config("tiny"), ["generator.sharing=all", "generator.hidden_fraction=1",
                                                  "generator.layers_fraction=1"])
    assert cfg.generator.sharing == "all"


# --------------------------------------------------------------------------- masking

def _words(V=97, B=400, T=48, seed=0):
    """Rows of real tokens where ids >= 60 are '##' continuation pieces; [CLS] first, [SEP] last."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    ids[:, 0], ids[:, -1] = SPECIAL["cls"], SPECIAL["sep"]
    cont = torch.zeros(V, dtype=torch.bool)
    cont[60:] = True
    cand = torch.ones(B, T, dtype=torch.bool)
    cand[:, 0] = cand[:, -1] = False
    return ids, cand, cont


def _word_ids(starts):
    return starts.cumsum(1)


def test_whole_word_masking_never_selects_part_of_a_word():
    ids, cand, cont = _words()
    starts = word_starts(ids, cand, cont)
    assert not (starts & cont[ids] & torch.roll(cand, 1, 1)).any()  # a '##' piece after a word continues it
    positions, valid = whole_word_positions(cand, starts, 0.15, torch.arange(len(ids)), seed=1)
    assert positions.shape == (len(ids), max_selected(ids.shape[1], 0.15))  # static width P
    sel = selected_mask(positions, valid, ids.shape[1])
    assert not (sel & ~cand).any()
    word = _word_ids(starts)
    n_words_checked = 0
    for b in range(len(ids)):
        for w in word[b][sel[b]].unique():
            members = (word[b] == w) & cand[b]
            assert sel[b][members].all()  # every piece of a chosen word
            n_words_checked += 1
    assert n_words_checked > 1000
    # ~mask_prob of the tokens: never above the uniform count k, on average within a few percent of it.
    k = round(cand[0].sum().item() * 0.15)
    counts = sel.sum(1).float()
    assert counts.max() <= max(k, positions.shape[1]) and abs(counts.mean().item() - k) / k < 0.03
    # Keyed by example: the same rows in another batch get the same mask.
    p2, v2 = whole_word_positions(cand[7:19], starts[7:19], 0.15, torch.arange(7, 19), seed=1)
    assert torch.equal(selected_mask(p2, v2, ids.shape[1]), sel[7:19])


def _runs(sel):
    """Lengths of the maximal runs of True in each row."""
    out = []
    for row in sel.tolist():
        n = 0
        for v in row + [False]:
            if v:
                n += 1
            elif n:
                out.append(n)
                n = 0
    return out


def test_span_lengths_follow_the_truncated_geometric_and_never_exceed_span_max():
    p, cap = 0.2, 10
    lengths = span_lengths(keyed_uniform(3, 7, torch.arange(400_000)), p, cap)
    q = 1 - p
    pmf = torch.tensor([p * q ** (i - 1) for i in range(1, cap + 1)], dtype=torch.float64)
    pmf /= pmf.sum()
    mean = (torch.arange(1, cap + 1) * pmf).sum().item()
    assert abs(mean - 3.80) < 0.01  # SpanBERT's mean span length for p = 0.2, max 10
    assert lengths.min() == 1 and lengths.max() == cap
    assert abs(lengths.double().mean().item() - mean) < 0.02
    freq = torch.bincount(lengths, minlength=cap + 1)[1:].double() / len(lengths)
    assert (freq - pmf).abs().max() < 0.003

    # Realised masks (no word information: every token a word): spans never touch, so every run is one span.
    B, T = 1000, 512
    cand = torch.ones(B, T, dtype=torch.bool)
    cand[:, 0] = cand[:, -1] = False
    positions, valid = span_positions(cand, cand, 0.15, torch.arange(B), 3, p, cap)
    sel = selected_mask(positions, valid, T)
    assert not (sel & ~cand).any()
    runs = torch.tensor(_runs(sel), dtype=torch.float64)
    assert runs.max() <= cap
    # Only the last span of a row is cut at the budget: the mean stays near the distribution's.
    assert abs(runs.mean().item() - mean) / mean < 0.06
    assert torch.equal(sel.sum(1), torch.full((B,), round(510 * 0.15)))  # exactly k tokens per row
    # Keyed by example.
    p2, v2 = span_positions(cand[5:9], cand[5:9], 0.15, torch.arange(5, 9), 3, p, cap)
    assert torch.equal(selected_mask(p2, v2, T), sel[5:9])


def test_span_masking_counts_spans_in_whole_words():
    ids, cand, cont = _words(T=128)
    select = make_selector("span", 0.15, cont, 0.2, 10)
    positions, valid = select(cand, ids, torch.arange(len(ids)), 2)
    sel = selected_mask(positions, valid, ids.shape[1])
    starts = word_starts(ids, cand, cont)
    word = _word_ids(starts)
    for b in range(100):
        for w in word[b][sel[b]].unique():
            assert sel[b][(word[b] == w) & cand[b]].all()
        # a run holds at most span_max words
        chosen_starts = (sel[b] & starts[b]).tolist()
        n, longest = 0, 0
        for s_, c in zip(sel[b].tolist(), chosen_starts):
            n = (n + c) if s_ else 0
            longest = max(longest, n)
        assert longest <= 10
    k = round(126 * 0.15)
    assert sel.sum(1).max() <= k and sel.sum(1).float().mean() > 0.85 * k


def test_continuation_flags_from_a_tokenizer_folder(tmp_path):
    _write_vocab(tmp_path / "tok", 120)
    flags = continuation_flags(tmp_path / "tok", 120)
    assert flags.shape == (120,) and flags[6] and not flags[5] and not flags[:5].any()
    assert flags.sum() == len([i for i in range(5, 120) if i % 3 == 0])
    assert continuation_flags(tmp_path / "missing", 120) is None


# --------------------------------------------------------------------------- end to end

OPTIONS = {
    "mlm": ["train.objective=mlm"],
    "electra15": ["train.objective=electra15"],
    "replace_mlm": ["train.objective=replace_mlm"],
    "all_tokens_mlm": ["train.objective=all_tokens_mlm"],
    "hybrid": ["train.objective=hybrid", "train.mask_token_prob=0.5", "train.mask_prob=0.3"],
    "sharing_none": ["generator.sharing=none"],
    "sharing_all": ["generator.sharing=all", "generator.hidden_fraction=1", "generator.layers_fraction=1"],
    "gdes": ["generator.sharing=gdes"],
    "whole_word": ["train.masking=whole_word"],
    "span": ["train.masking=span", "train.span_max=4"],
}


def _write_vocab(folder: Path, vocab: int) -> None:
    """A WordPiece vocab.txt over the synthetic ids: every third id is a '##' continuation piece."""
    folder.mkdir(parents=True)
    names = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    names += [f"##p{i}" if i % 3 == 0 else f"w{i}" for i in range(5, vocab)]
    assert {n: i for i, n in enumerate(names)}["[MASK]"] == SPECIAL_IDS["mask"]
    (folder / "vocab.txt").write_text("".join(n + "\n" for n in names))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = make_data_dir(tmp_path_factory.mktemp("d") / "data")
    _write_vocab(path / "tokenizer", 120)
    return path


def _losses(run):
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["gen_loss"], r["disc_loss"], r.get("mlm_loss", 0.0)) for r in recs if "gen_loss" in r}


@pytest.mark.parametrize("option", list(OPTIONS))
def test_every_option_pretrains_resumes_exactly_exports_and_fine_tunes(option, data, tmp_path):
    transformers = pytest.importorskip("transformers")
    overrides = SMALL + OPTIONS[option]
    full = pretrain(data, tmp_path / "full", preset="tiny", max_steps=6, overrides=overrides, progress=False)
    run = tmp_path / "run"
    pretrain(data, run, preset="tiny", max_steps=6, overrides=overrides + ["train.stop_at=3"], progress=False)
    pretrain(data, run, resume=True, progress=False)
    a, b = _losses(full), _losses(run)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for step in range(1, 7):
        assert max(abs(x - y) for x, y in zip(a[step], b[step])) <= 1e-5, (step, a[step], b[step])
    start = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert start.get("word_boundaries", True) is True  # whole-word and span masking found the tokenizer's words
    assert (start["generator_params"] == 0) == (option == "mlm")
    cfg = json.loads((run / "config.json").read_text())
    key, _, value = OPTIONS[option][0].partition("=")
    section, name = key.split(".")
    assert str(cfg[section][name]) == value

    disc_dir, gen_dir = export_run(run, tmp_path / "hf")
    hf_cls = "ElectraForPreTraining" if option not in ("mlm", "replace_mlm", "all_tokens_mlm") else "ElectraForMaskedLM"
    assert json.loads((disc_dir / "config.json").read_text())["architectures"] == [hf_cls]
    hf = getattr(transformers, hf_cls).from_pretrained(disc_dir)
    assert (gen_dir is None) == (option == "mlm")
    if gen_dir is not None:
        transformers.ElectraForMaskedLM.from_pretrained(gen_dir)
    # Fine-tuning reads the same encoder from the run folder and from the export.
    model_cfg, from_run, tok = load_encoder_source(run)
    _, from_export, _ = load_encoder_source(tmp_path / "hf")
    assert model_cfg.hidden_size == 32 and tok == run / "tokenizer" and (tok / "vocab.txt").is_file()
    assert sorted(from_run) == sorted(from_export) == sorted(k for k in hf.state_dict() if k.startswith("electra."))
    for k in from_run:
        torch.testing.assert_close(from_run[k], from_export[k])
        torch.testing.assert_close(from_run[k], hf.state_dict()[k])
    ids = torch.tensor([[2, 10, 11, 12, 3, 13, 14, 3]])
    with torch.no_grad():
        ours = exportable(build_model(load_run_config(run)).discriminator)
        ours.load_state_dict({k.removeprefix("discriminator."): v for k, v in load_hf_state(disc_dir)[1].items()})
        out_hf = hf(input_ids=ids).logits
        out = ours.eval()(ids)
    assert (out - out_hf).abs().max() <= 1e-4


def test_a_run_config_from_before_these_options_loads_as_the_defaults(data, tmp_path):
    run = pretrain(data, tmp_path / "old", preset="tiny", max_steps=1, overrides=SMALL, progress=False)
    cfg = json.loads((run / "config.json").read_text())
    for section, name in (("train", "objective"), ("train", "masking"), ("train", "span_p"), ("train", "span_max"),
                          ("generator", "sharing")):
        del cfg[section][name]
    (run / "config.json").write_text(json.dumps(cfg))
    loaded = load_run_config(run)
    assert (loaded.train.objective, loaded.train.masking, loaded.generator.sharing) == \
        ("electra", "uniform", "embeddings")
    assert export_run(run, tmp_path / "hf")[1] is not None and load_encoder_source(run)[1]


@pytest.mark.parametrize("option", ["mlm", "gdes", "all_tokens_mlm", "hybrid"])
def test_init_from_an_export_of_the_same_option(option, data, tmp_path):
    run = pretrain(data, tmp_path / "run", preset="tiny", max_steps=3, overrides=SMALL + OPTIONS[option],
                   progress=False)
    export_run(run, tmp_path / "hf")
    model = build_model(load_run_config(run))
    load_pretrainer_from_hf(model, tmp_path / "hf")
    exported = {k: v for k, v in load_hf_state(tmp_path / "hf" / "discriminator")[1].items()}
    mine = exportable(model.discriminator).state_dict()
    for k, v in exported.items():
        torch.testing.assert_close(mine[k], v)


def test_whole_word_without_a_tokenizer_is_refused_before_anything_is_written(tmp_path):
    bare = make_data_dir(tmp_path / "bare")
    with pytest.raises(UserError, match="whole_word needs the data's WordPiece tokenizer"):
        pretrain(bare, tmp_path / "x", preset="tiny", max_steps=2, overrides=SMALL + ["train.masking=whole_word"],
                 progress=False)
    assert not (tmp_path / "x").exists()
    # span masking falls back to token spans and says so
    run = pretrain(bare, tmp_path / "y", preset="tiny", max_steps=1, overrides=SMALL + ["train.masking=span"],
                   progress=False)
    start = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["word_boundaries"] is False
