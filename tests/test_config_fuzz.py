"""Property tests for the configuration readers: ``--set key=value`` (pre-training and fine-tuning) and a run's
config.json (and a transformers folder's). Whatever the input, a reader gives a valid config or raises a one-line
UserError (naming the file for config.json); never another exception, never a hang.

"Valid" is judged by what the run later does with the config, not by re-reading the validator: it survives the
round trip through config.json (what --resume reads), the optimiser, the seeded generators and the clipping accept
its values, and a small enough model builds and gives finite outputs."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from fuzzing import FUZZ, check, mostly
from hypothesis import given
from hypothesis import strategies as st

from electra.config import (ACTIVATIONS, ALGORITHMS, MASKINGS, OBJECTIVES, PRESETS, SHARING, GeneratorConfig,
                            ModelConfig, PretrainConfig, TrainConfig, apply_overrides, dumps, preset_config, set_fields)
from electra.errors import UserError
from electra.finetuning.finetune import FinetuneConfig
from electra.interop.hf import load_hf_state
from electra.model import ElectraForMaskedLM, ElectraForPreTraining
from electra.runtime.checkpoint import load_run_config

# --------------------------------------------------------------------------- what "valid" means

KINDS = {"int": int, "float": float, "str": str, "bool": bool}  # field types are strings (future annotations)


def assert_typed(obj) -> None:
    """Every field holds exactly its declared type (torch's AdamW refuses an int beta), a float is finite, and an
    int fits torch's int64."""
    for f in dataclasses.fields(obj):
        value, kind = getattr(obj, f.name), KINDS[f.type]
        assert type(value) is kind, (f.name, value)
        if kind is float:
            assert math.isfinite(value), (f.name, value)
        if type(value) is int:
            assert -2**63 <= value < 2**63, (f.name, value)


def assert_usable_model(m: ModelConfig) -> None:
    assert_typed(m)
    assert m.hidden_act in ACTIVATIONS and m.hidden_size % m.num_attention_heads == 0
    assert 0 <= m.pad_token_id < m.vocab_size and m.type_vocab_size >= 1
    torch.nn.Dropout(m.hidden_dropout_prob), torch.nn.Dropout(m.attention_probs_dropout_prob)  # ValueError if not in [0, 1]
    # A constant vector has zero variance: LayerNorm stays finite only with eps > 0 (float64: a tiny eps that
    # float32 would round to 0 is the run's precision, not the config's, to worry about).
    assert torch.isfinite(torch.nn.LayerNorm(3, eps=m.layer_norm_eps, dtype=torch.float64)(
        torch.ones(1, 3, dtype=torch.float64))).all()
    r = m.initializer_range
    assert torch.isfinite(torch.nn.init.trunc_normal_(torch.empty(3), std=r, a=-2 * r, b=2 * r)).all()
    H, E, I = m.hidden_size, m.embedding_size, m.intermediate_size
    params = (m.vocab_size + m.max_position_embeddings + m.type_vocab_size) * E + m.num_hidden_layers * (4 * H * H + 2 * H * I)
    if params <= 200_000:  # small enough to build: the whole model must work, in training mode (dropout on)
        T = min(4, m.max_position_embeddings)
        ids = torch.arange(T)[None] % m.vocab_size
        types = torch.arange(T)[None] % m.type_vocab_size
        with torch.no_grad():
            assert torch.isfinite(ElectraForPreTraining(m).train()(ids, torch.ones_like(ids), types)).all()
            assert torch.isfinite(ElectraForMaskedLM(m).train()(ids, None, types)).all()


def assert_usable(cfg: PretrainConfig) -> None:
    """What the run does with an accepted pre-training config must work."""
    for section in (cfg.model, cfg.generator, cfg.train):
        assert_typed(section)
    assert isinstance(cfg.preset, str)
    assert_usable_model(cfg.model)
    assert_usable_model(cfg.generator_model_config())
    assert cfg.model.type_vocab_size >= 2  # pre-training examples have segments A (type 0) and B (type 1)
    t = cfg.train
    # The optimiser accepts the recipe, and a first step on an unused parameter (grad 0, so v = 0) stays finite.
    p = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = torch.optim.AdamW([p], lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon,
                            weight_decay=t.weight_decay)
    p.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    assert torch.isfinite(p).all()
    # Clipping a huge gradient shrinks it but never turns it around (a tiny max_grad_norm may round it to 0).
    p.grad = torch.tensor([3e6, -4e6], dtype=torch.float64)
    torch.nn.utils.clip_grad_norm_([p], t.max_grad_norm)
    assert (p.grad * torch.tensor([3.0, -4.0], dtype=torch.float64) >= 0).all() and p.grad.norm() <= 5e6
    assert t.disc_weight >= 0  # loss = MLM + disc_weight * BCE must not reward a wrong discriminator
    torch.Generator().manual_seed(t.seed), np.random.default_rng([t.seed, 0])  # both take the seed
    if t.device != "auto":
        assert torch.device(t.device).type in ("cpu", "cuda")
    assert t.micro_batch_size == 0 or t.batch_size % t.micro_batch_size == 0
    # What --resume reads back is what was written.
    assert PretrainConfig.from_dict(json.loads(dumps(cfg))) == cfg


# --------------------------------------------------------------------------- --set for pre-training

SECTIONS = {"model": ModelConfig, "generator": GeneratorConfig, "train": TrainConfig}
FULL_KEYS = [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
BARE_KEYS = [k.split(".", 1)[1] for k in FULL_KEYS]
ODD_KEYS = ["", " ", "x", "train.", ".seed", "train..seed", "train.model.hidden_size", "model.hidden_size.x",
            "Train.seed", "train.Seed", "finetune.seed", "preset", "train.seed\n", "tr\nain.seed", "train.seed=1",
            "model.hidden_size ", "\u2028seed"]
keys = mostly(st.sampled_from(FULL_KEYS + BARE_KEYS), st.sampled_from(ODD_KEYS) | st.text(max_size=8))
CHOICES = [*OBJECTIVES, *SHARING, *MASKINGS, *ALGORITHMS, *ACTIVATIONS, "auto", "cpu", "cuda", "cuda:0", "cuda:x",
           "ddp", "fsdp", "fp32", "bf16", "fp16", "google", "correct", "scratch", "pretrained"]
NUMBERS = ["0", "1", "-1", "2", "3", "4", "8", "16", "0.5", "1.0", "0.25", "1e-3", "-0.1", "1.5", "2.0", "1e6", "1e-320",
           "nan", "NaN", "inf", "-inf", "1e400", "-1e400", "9" * 30, "12345678901234567891", str(2**63), str(2**64),
           str(-2**63 - 1), "0x10", "1_000", "١٢", "", " ", "true", "False", "yes", "no", "None", "null"]
values = st.sampled_from(NUMBERS + CHOICES) | st.integers(-2**70, 2**70).map(str) | st.floats().map(repr) \
    | st.text(max_size=6)
pairs = st.lists(mostly(st.tuples(keys, values).map("=".join), st.text(max_size=12)), max_size=5)


@FUZZ
@given(preset=st.sampled_from(PRESETS), vocab=st.sampled_from([30522, 40, 5]), overrides=pairs)
def test_pretrain_set_never_crashes(preset, vocab, overrides):
    # vocab 40 makes many models small enough for assert_usable to build them; 5 has room for the specials only.
    cfg = check(apply_overrides, preset_config(preset, vocab_size=vocab), overrides)
    if cfg is not None:
        assert_usable(cfg)


def typed_value(kind, choices):
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(-2**64, 2**64) | st.integers(-3, 600)
    if kind is float:
        return st.floats(allow_nan=False, allow_infinity=False) | st.floats(-0.5, 1.5)
    return st.sampled_from(choices)


def canonical(value) -> str:
    """How a user would write it: true/false, Python's shortest round-tripping float, plain ints and words."""
    return str(value).lower() if isinstance(value, bool) else value if isinstance(value, str) else repr(value)


@st.composite
def typed_override(draw):
    key = draw(st.sampled_from(FULL_KEYS))
    section, name = key.split(".")
    field = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)
    value = draw(typed_value(KINDS[field.type], CHOICES))
    return key, value, draw(st.sampled_from([key, name])) if BARE_KEYS.count(name) == 1 else key


@FUZZ
@given(preset=st.sampled_from(PRESETS), override=typed_override())
def test_pretrain_set_value_is_taken_exactly(preset, override):
    """A value of the field's type, written as Python writes it, is either refused or set exactly (no rounding
    through float for a big int, no change of type)."""
    key, value, spelled = override
    cfg = check(apply_overrides, preset_config(preset, vocab_size=40), [f"{spelled}={canonical(value)}"])
    if cfg is not None:
        section, name = key.split(".")
        got = getattr(getattr(cfg, section), name)
        assert got == value and type(got) is type(value), (got, value)
        assert_usable(cfg)


def allowed(sharing, objective, algorithm, hidden, layers) -> bool:
    """The rules docs/electra.md gives for combining the ablation switches."""
    return not ((sharing == "all" and (hidden != 1 or layers != 1))
                or (objective in ("mlm", "hybrid") and sharing != "embeddings")
                or (sharing == "gdes" and objective not in ("electra", "electra15"))
                or (algorithm != "joint" and objective not in ("electra", "electra15"))
                or (algorithm == "two_stage" and sharing not in ("none", "gdes"))
                or (algorithm == "adversarial" and sharing == "all"))


@FUZZ
@given(sharing=st.sampled_from(SHARING), objective=st.sampled_from(OBJECTIVES), algorithm=st.sampled_from(ALGORITHMS),
       masking=st.sampled_from(MASKINGS), hidden=st.sampled_from([1, 1.0, 0.5, 0.25]), layers=st.sampled_from([1, 0.5]))
def test_impossible_combinations_are_refused_listing_valid_choices(sharing, objective, algorithm, masking, hidden,
                                                                   layers):
    overrides = [f"sharing={sharing}", f"objective={objective}", f"algorithm={algorithm}", f"masking={masking}",
                 f"hidden_fraction={hidden}", f"layers_fraction={layers}", "train.max_steps=100"]
    try:
        cfg = apply_overrides(preset_config("tiny", vocab_size=40), overrides)
    except UserError as e:
        assert not allowed(sharing, objective, algorithm, hidden, layers), (overrides, str(e))
        message = str(e)
        # One line that says what would work: "valid ...: " then choices that exist.
        assert "\n" not in message and "valid" in message, message
        assert any(c in message.split("valid", 1)[1] for c in (*SHARING, *OBJECTIVES, *ALGORITHMS)), message
    else:
        assert allowed(sharing, objective, algorithm, hidden, layers), overrides
        assert_usable(cfg)


@pytest.mark.parametrize("overrides, words", [
    (["generator.sharing=all"], ["generator.hidden_fraction=1", "valid", "none, embeddings, gdes"]),
    (["objective=mlm", "sharing=none"], ["train.objective=mlm", "valid generator.sharing", "embeddings"]),
    (["sharing=gdes", "objective=mlm"], ["valid", "embeddings"]),
    (["objective=replace_mlm", "sharing=gdes"], ["valid objectives with it: electra, electra15"]),
])
def test_combination_messages_name_the_valid_choices(overrides, words):
    with pytest.raises(UserError) as e:
        apply_overrides(preset_config("tiny"), overrides)
    assert all(w in str(e.value) for w in words), str(e.value)


# --------------------------------------------------------------------------- --set for fine-tuning

FT_KEYS = [f.name for f in dataclasses.fields(FinetuneConfig)]
ft_pairs = st.lists(mostly(st.tuples(mostly(st.sampled_from(FT_KEYS + [f"finetune.{k}" for k in FT_KEYS]),
                                            st.sampled_from(ODD_KEYS) | st.text(max_size=8)), values).map("=".join),
                           st.text(max_size=12)), max_size=5)


def finetune_overrides(overrides: list[str]) -> FinetuneConfig:
    """What ``electra finetune --set`` does before it looks at the model (finetune.finetune)."""
    cfg = FinetuneConfig()
    set_fields({"finetune": cfg}, overrides)
    cfg.validate()
    return cfg


@FUZZ
@given(overrides=ft_pairs, hidden=st.sampled_from([64, 256, 1024]), task=st.sampled_from(["classification", "qa"]))
def test_finetune_set_never_crashes(overrides, hidden, task):
    cfg = check(finetune_overrides, overrides)
    if cfg is not None:
        assert_typed(cfg)
        resolved = check(cfg.resolve, ModelConfig(hidden_size=hidden, num_attention_heads=4), task)
        if resolved is not None:
            assert_typed(resolved)
            assert resolved.learning_rate > 0 and resolved.max_seq_length > 0 and 0 < resolved.layerwise_lr_decay <= 1


# --------------------------------------------------------------------------- a run's config.json

def config_dicts():
    """A valid run config, as the dict config.json holds, for each preset."""
    return st.sampled_from(PRESETS).map(lambda p: json.loads(dumps(preset_config(p, vocab_size=40))))


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                         max_size=3),
                           max_leaves=8)
scalar = st.sampled_from([0, 1, -1, 0.5, 1.0, -0.0, 1e-320, 10**30, 2**63, -2**63 - 1, float("nan"), float("inf"),
                          True, False, None, "", "1", "nan", "gelu", "cuda:x", [], {}]) | json_values


@st.composite
def mutated_config(draw):
    """A valid config.json dict with a few edits: a field's value, a section, an unknown or missing key."""
    d = draw(config_dicts())
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["field", "field", "field", "section", "unknown", "drop", "top"]))
        section = draw(st.sampled_from(["model", "generator", "train"]))
        if what == "field" and isinstance(d.get(section), dict) and d[section]:
            d[section][draw(st.sampled_from(sorted(d[section])))] = draw(scalar)
        elif what == "section":
            d[section] = draw(scalar)
        elif what == "unknown":
            target = d[section] if isinstance(d.get(section), dict) else d
            target[draw(st.sampled_from(["x", "hidden", "learning-rate", "\n", ""]) | st.text(max_size=5))] = 1
        elif what == "drop":
            d.pop(draw(st.sampled_from(["preset", "model", "generator", "train"])), None)
            if isinstance(d.get(section), dict) and d[section]:
                d[section].pop(draw(st.sampled_from(sorted(d[section]))))
        elif what == "top":
            d["preset"] = draw(scalar)
    return d


def encode(root, ascii_only: bool, indent) -> bytes:
    return json.dumps(root, ensure_ascii=ascii_only, indent=indent).encode("utf-8", "surrogatepass")


raw = st.binary(max_size=300)
noise = st.sampled_from([b"", b"}", b"\x00", b"\xff", b"[[", b"\n", b"NaN", b"\xef\xbb\xbf"])
deep = st.integers(1, 100_000).map(lambda n: b"[" * n) | st.integers(1, 100_000).map(lambda n: b'{"a":' * n + b"1")


def check_config_json(tmp_path, data: bytes):
    path = tmp_path / "config.json"
    path.write_bytes(data)
    cfg = check(load_run_config, tmp_path, name=str(path))
    if cfg is not None:
        assert_usable(cfg)
    return cfg


@FUZZ
@given(root=mostly(mutated_config(), json_values), ascii_only=st.booleans(), indent=st.sampled_from([None, 1]),
       cut=st.none() | st.none() | st.integers(0, 3000), tail=noise)
def test_run_config_json_never_crashes(tmp_path, root, ascii_only, indent, cut, tail):
    data = encode(root, ascii_only, indent)
    if cut is not None:  # truncated or corrupted JSON
        data = data[:cut] + tail
    check_config_json(tmp_path, data)


@FUZZ
@given(data=raw | deep | st.text(max_size=40).map(str.encode), bom=st.sampled_from([b"", b"\xef\xbb\xbf"]))
def test_run_config_json_random_bytes(tmp_path, data, bom):
    check_config_json(tmp_path, bom + data)


@FUZZ
@given(root=config_dicts(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]))
def test_valid_run_config_json_loads_back(tmp_path, root, encoding):
    """The success path: an unedited config.json loads, in any encoding JSON allows, and equals what was written."""
    cfg = check_config_json(tmp_path, json.dumps(root, ensure_ascii=False).encode(encoding))
    assert cfg is not None and cfg.to_dict() == root


# Before: a RecursionError; configs loaded unvalidated (NaN, a string, 0 heads crashed later, in AdamW, in a
# comparison, in a division); the shape errors said only "list indices must be integers" or "unexpected keyword".
@pytest.mark.parametrize("data, words", [
    pytest.param(b"[" * 100_000, "nested too deeply", id="deep-nesting"),
    (b"[1, 2]", "a JSON object"),
    (b'{"preset": "tiny", "model": {}, "generator": {}, "train": {"learning_rate": NaN}}', "train.learning_rate"),
    (b'{"preset": "tiny", "model": {}, "generator": {}, "train": {"learning_rate": "1e-3"}}', "train.learning_rate"),
    (b'{"preset": "tiny", "model": {"num_attention_heads": 0}, "generator": {}, "train": {}}', "num_attention_heads"),
    (b'{"preset": "tiny", "model": {"hidden": 1}, "generator": {}, "train": {}}', "valid keys"),
    (b'{"preset": "tiny", "model": [], "generator": {}, "train": {}}', "model must be a JSON object"),
    (b'{"model": {}, "generator": {}, "train": {}}', "no 'preset'"),
    (b'{"preset": "tiny", "model": {}, "generator": {}, "train": {"adam_beta1": 0}}', None),  # an int where a float
])                                                                                         # is due: fine, as 0.0
def test_bad_run_config_json_regressions(tmp_path, data, words):
    (tmp_path / "config.json").write_bytes(data)
    if words is None:
        assert_usable(load_run_config(tmp_path))  # was AdamW's "betas must be either both floats or both Tensors"
        return
    with pytest.raises(UserError) as e:
        load_run_config(tmp_path)
    message = str(e.value)
    assert str(tmp_path / "config.json") in message and words in message and "\n" not in message, message


def test_int_in_a_float_field_of_config_json_takes_a_float_override(tmp_path):
    """A hand-edited config.json may hold "learning_rate": 1; --set must still take 5e-4 (it used to demand an int)."""
    root = json.loads(dumps(preset_config("tiny", vocab_size=40)))
    root["train"]["learning_rate"] = 1
    (tmp_path / "config.json").write_text(json.dumps(root))
    cfg = apply_overrides(load_run_config(tmp_path), ["train.learning_rate=5e-4"])
    assert cfg.train.learning_rate == 5e-4


# --------------------------------------------------------------------------- a transformers folder's config.json

def hf_dicts():
    return st.sampled_from(PRESETS).map(lambda p: preset_config(p, vocab_size=40).model.to_hf_dict("ElectraForPreTraining"))


@st.composite
def mutated_hf(draw):
    d = draw(hf_dicts())
    for _ in range(draw(st.integers(0, 3))):
        d[draw(st.sampled_from(sorted(d)) | st.sampled_from(["model_type", "x"]))] = draw(scalar)
    return d


@FUZZ
@given(root=mostly(mutated_hf(), json_values), cut=st.none() | st.none() | st.integers(0, 800), tail=noise)
def test_hf_config_json_never_crashes(tmp_path, root, cut, tail):
    data = encode(root, False, 1)
    if cut is not None:
        data = data[:cut] + tail
    path = tmp_path / "config.json"
    path.write_bytes(data)
    try:
        load_hf_state(tmp_path)
    except UserError as e:
        message = str(e)
        assert "\n" not in message and len(message.splitlines()) == 1, message
        if "no model.safetensors" in message:  # the config was accepted: it must be usable
            assert_usable_model(ModelConfig.from_hf_dict(json.loads(data), str(path)))
        else:
            assert str(path) in message, message
    else:
        raise AssertionError("a folder without weights loaded")


# --------------------------------------------------------------------------- regressions found by the fuzzers

@pytest.mark.parametrize("overrides, words", [
    (["model.num_attention_heads=0"], "num_attention_heads must be positive"),  # was ZeroDivisionError
    (["train.seed=-1"], "train.seed"),                                         # was numpy's ValueError in the loader
    (["train.adam_beta1=1"], "train.adam_beta1"),                              # was AdamW's ValueError
    (["train.adam_epsilon=0"], "train.adam_epsilon"),                          # NaN on the first step
    (["train.weight_decay=-0.1"], "train.weight_decay"),
    (["train.max_grad_norm=0"], "train.max_grad_norm"),
    (["train.disc_weight=-1"], "train.disc_weight"),
    (["train.device=cuda:x"], "cuda:N"),                                       # was torch's RuntimeError
    (["model.pad_token_id=40"], "model: pad_token_id"),                         # was an AssertionError in nn.Embedding
    (["model.type_vocab_size=1"], "model.type_vocab_size"),                    # segment B would index out of range
    (["model.hidden_dropout_prob=1.5"], "model: hidden_dropout_prob"),         # was nn.Dropout's ValueError
    (["model.layer_norm_eps=0"], "model: layer_norm_eps"),
    (["model.initializer_range=0"], "model: initializer_range"),               # was ZeroDivisionError at init
    (["tr\nain.seed=1"], "'tr\\nain.seed'"),                                   # the message stays on one line
    (["train.batch_size=1\n2"], "'1\\n2'"),
    ([f"train.max_steps={2**64}"], "train.max_steps"),
])
def test_set_regressions(overrides, words):
    with pytest.raises(UserError) as e:
        apply_overrides(preset_config("tiny", vocab_size=40), overrides)
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_big_int_set_exactly():
    cfg = apply_overrides(preset_config("tiny"), ["train.seed=1234567890123456789", "train.max_steps=1e6"])
    assert cfg.train.seed == 1234567890123456789 and cfg.train.max_steps == 1_000_000  # not rounded through float
