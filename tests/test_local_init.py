"""train.local_init: layer 0's first heads start out reading the previous and the next token."""

import pytest
import torch
from synthetic import SMALL_RUN, make_data_dir

from electra.config import apply_overrides, preset_config
from electra.errors import UserError
from electra.pretraining.export import export_run
from electra.model import ElectraForPreTraining
from electra.pretraining.local_init import init_local_attention
from electra.pretraining.pretrain import pretrain
from electra.pretraining.setup import build_model


def _layer0_attention(model: ElectraForPreTraining, ids: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, T) attention weights of layer 0, as SDPA computes them without a mask."""
    x = model.electra.embeddings(ids)
    if hasattr(model.electra, "embeddings_project"):
        x = model.electra.embeddings_project(x)
    att = model.electra.encoder.layer[0].attention.self
    B, T, H = x.shape
    q = att.query(x).view(B, T, att.num_heads, att.head_size).transpose(1, 2)
    k = att.key(x).view(B, T, att.num_heads, att.head_size).transpose(1, 2)
    return (q @ k.transpose(-1, -2) / att.head_size ** 0.5).softmax(-1)


@pytest.mark.parametrize("preset", ["tiny", "small"])  # small: 128 -> 256 through embeddings_project
def test_heads_zero_and_one_attend_to_the_previous_and_next_token(preset):
    cfg = preset_config(preset, vocab_size=500)
    torch.manual_seed(0)
    model = ElectraForPreTraining(cfg.model).eval()
    init_local_attention(model.electra)
    ids = torch.randint(5, 500, (4, 128))
    w = _layer0_attention(model, ids)
    i = torch.arange(1, 127)
    assert w[:, 0, i, i - 1].min() > 0.7 and w[:, 0, i, i - 1].mean() > 0.9
    assert w[:, 1, i, i + 1].min() > 0.7 and w[:, 1, i, i + 1].mean() > 0.9
    if cfg.model.num_attention_heads > 2:  # the other heads keep their random, near-uniform start
        assert w[:, 2].max() < 0.2
    # The value path: the attention output at i carries the word vector of i - 1 (its own token is masked out
    # of head 0's view), so two sequences that differ only at position 5 differ at position 6 after attention.
    other = ids.clone()
    other[:, 5] = (ids[:, 5] + 1 - 5) % 495 + 5
    layer = model.electra.encoder.layer[0].attention
    def attended(x_ids):
        x = model.electra.embeddings(x_ids)
        if hasattr(model.electra, "embeddings_project"):
            x = model.electra.embeddings_project(x)
        return layer.output.dense(layer.self(x, None))
    delta = (attended(ids) - attended(other)).norm(dim=-1)  # (B, T)
    assert (delta[:, 6] > 10 * delta[:, 20]).all() and (delta[:, 4] > 10 * delta[:, 20]).all()


def test_a_locally_initialised_run_exports_a_plain_transformers_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    run = pretrain(make_data_dir(tmp_path / "data"), tmp_path / "run", preset="tiny", max_steps=2,
                   overrides=SMALL_RUN + ["train.local_init=true", "model.num_attention_heads=1",
                                          "model.embedding_size=64", "model.hidden_size=64"], progress=False)
    disc_dir, _ = export_run(run, tmp_path / "hf")
    hf = transformers.ElectraForPreTraining.from_pretrained(disc_dir).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3, 13, 14, 3]])
    from electra.runtime.checkpoint import load_run_config
    ours = build_model(load_run_config(run)).discriminator
    ours.load_state_dict({k.removeprefix("discriminator."): v for k, v in
                          __import__("safetensors.torch", fromlist=["load_file"]).load_file(
                              str(disc_dir / "model.safetensors")).items()}, strict=False)
    with torch.no_grad():
        assert (ours.eval()(ids) - hf(input_ids=ids).logits).abs().max() < 1e-4


def test_build_model_applies_it_deterministically():
    cfg = apply_overrides(preset_config("tiny", vocab_size=300), ["train.local_init=true"])
    torch.manual_seed(0)
    a = build_model(cfg).discriminator.electra.encoder.layer[0].attention.self.query.weight
    torch.manual_seed(1)
    b = build_model(cfg).discriminator.electra.encoder.layer[0].attention.self.query.weight
    assert torch.equal(a[:64], b[:64])  # the constructed heads do not depend on the random stream
    plain = preset_config("tiny", vocab_size=300, recipe="paper")
    torch.manual_seed(0)
    assert not torch.equal(build_model(plain).discriminator.electra.encoder.layer[0].attention.self.query.weight, a)


@pytest.mark.parametrize("overrides, message", [
    (["model.hidden_size=8", "model.embedding_size=8", "model.num_attention_heads=4"], "heads of at least 4"),
    (["model.hidden_size=64", "model.embedding_size=128", "model.num_attention_heads=2"], "no larger than the hidden"),
])
def test_shapes_it_cannot_build_are_refused(overrides, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(preset_config("tiny"), ["train.local_init=true", *overrides])


def test_with_gdes_the_generator_tables_are_reshaped_and_the_discriminator_reads_them():
    cfg = apply_overrides(preset_config("tiny", vocab_size=300, recipe="small_budget"), ["generator.sharing=gdes"])
    model = build_model(cfg)
    disc_positions = model.discriminator.electra.embeddings.position_embeddings.weight  # generator's + delta (0)
    gen_positions = model.generator.electra.embeddings.position_embeddings.weight
    assert torch.equal(disc_positions, gen_positions)
    assert (gen_positions[:, :96] == 0).all() and gen_positions[:, 96:].abs().max() > 0  # sinusoids in the last dims


def test_a_generator_as_wide_as_the_discriminator_gets_the_neighbour_heads_too_a_narrow_one_does_not():
    wide = build_model(apply_overrides(preset_config("tiny", vocab_size=300, recipe="small_budget"), [
                                                                               "generator.layers_fraction=0.25"]))
    torch.manual_seed(0)
    i = torch.arange(1, 127)
    w = _layer0_attention(wide.generator.eval(), torch.randint(5, 300, (2, 128)))
    assert w[:, 0, i, i - 1].mean() > 0.9 and w[:, 1, i, i + 1].mean() > 0.9
    narrow = build_model(apply_overrides(preset_config("tiny", vocab_size=300), ["generator.hidden_fraction=0.25"]))
    w = _layer0_attention(narrow.generator.eval(), torch.randint(5, 300, (2, 128)))
    assert w[:, 0, i, i - 1].mean() < 0.2  # random start: near-uniform attention
