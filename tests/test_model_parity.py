"""Our encoder and heads against transformers' ELECTRA classes on random weights."""

import dataclasses

import pytest
import torch

from electra.config import ModelConfig
from electra.model import ElectraForMaskedLM, ElectraForPreTraining

transformers = pytest.importorskip("transformers")

CFG = ModelConfig(vocab_size=211, embedding_size=24, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=48, max_position_embeddings=40)


def _inputs(B=3, T=17, vocab=211):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (B, T), generator=g)
    attn = torch.ones(B, T, dtype=torch.long)
    attn[1, 11:] = 0  # padding in one row
    ids[1, 11:] = 0
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, 8:] = 1
    return ids, attn, types


def _hf(cls_name, cfg: ModelConfig):
    hf_cfg = transformers.ElectraConfig(**dataclasses.asdict(cfg))
    return getattr(transformers, cls_name)(hf_cfg).eval()


@pytest.mark.parametrize("with_position_ids", [False, True])
@pytest.mark.parametrize("ours_cls,hf_name", [(ElectraForPreTraining, "ElectraForPreTraining"),
                                              (ElectraForMaskedLM, "ElectraForMaskedLM")])
def test_same_names_and_logits_as_transformers(ours_cls, hf_name, with_position_ids):
    torch.manual_seed(1)
    ours = ours_cls(CFG).eval()
    hf = _hf(hf_name, CFG)
    hf_keys = set(hf.state_dict())
    assert set(ours.state_dict()) == hf_keys  # identical parameter names: export is a prefix split
    # Random (not default-initialised) weights, so biases and LayerNorms are exercised too.
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.3)
    hf.load_state_dict(ours.state_dict())
    ids, attn, types = _inputs()
    # Explicit positions (a warm-up window keeps its place in the sequence): row r starts at 5r
    position_ids = torch.arange(17)[None] + 5 * torch.arange(3)[:, None] if with_position_ids else None
    with torch.no_grad():
        a = ours(ids, attn, types, position_ids=position_ids)
        b = hf(input_ids=ids, attention_mask=attn, token_type_ids=types, position_ids=position_ids).logits
    real = attn.bool()
    assert a.shape == b.shape
    assert (a[real] - b[real]).abs().max().item() <= 1e-4


def test_generator_positions_give_the_same_logits_as_the_full_head():
    torch.manual_seed(2)
    gen = ElectraForMaskedLM(CFG).eval()
    ids, attn, types = _inputs()
    positions = torch.tensor([[3, 0], [1, 2], [5, 9]])  # (B, P)
    with torch.no_grad():
        full = gen(ids, attn, types)  # (B, T, V)
        sparse = gen(ids, attn, types, positions=positions)  # (B, P, V)
    assert sparse.shape == (3, 2, CFG.vocab_size)
    torch.testing.assert_close(sparse, full[torch.arange(3)[:, None], positions], rtol=1e-5, atol=1e-5)


def test_lm_head_is_tied_to_word_embeddings():
    gen = ElectraForMaskedLM(CFG)
    assert gen.generator_lm_head.weight is gen.electra.embeddings.word_embeddings.weight


@pytest.mark.parametrize("head,hf_name,num_labels", [
    ("ElectraForSequenceClassification", "ElectraForSequenceClassification", 3),
    ("ElectraForSequenceClassification", "ElectraForSequenceClassification", 1),  # regression
    ("ElectraForTokenClassification", "ElectraForTokenClassification", 5),
    ("ElectraForQuestionAnswering", "ElectraForQuestionAnswering", 2),
])
def test_task_heads_same_names_and_logits_as_transformers(head, hf_name, num_labels):
    import electra.model as m

    torch.manual_seed(2)
    ours = getattr(m, head)(CFG, num_labels).eval()
    hf_cfg = transformers.ElectraConfig(**dataclasses.asdict(CFG), num_labels=num_labels)
    hf = getattr(transformers, hf_name)(hf_cfg).eval()
    assert set(ours.state_dict()) == set(hf.state_dict())
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.3)
    hf.load_state_dict(ours.state_dict())
    ids, attn, types = _inputs()
    with torch.no_grad():
        a = ours(ids, attn, types)
        out = hf(input_ids=ids, attention_mask=attn, token_type_ids=types)
    if hf_name == "ElectraForQuestionAnswering":
        pairs = [(a[0], out.start_logits), (a[1], out.end_logits)]
    else:
        pairs = [(a, out.logits)]
    real = attn.bool()
    for x, y in pairs:
        if x.dim() >= 2 and x.shape[1] == real.shape[1]:  # per-token outputs: padding positions are undefined
            x, y = x[real], y[real]
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


def test_explicit_attention_gives_the_sdpa_result_and_is_undone_after():
    """The explicit form (additive mask, matmul-softmax-matmul) that ONNX exports use: same outputs as SDPA on the
    real tokens of padded rows, and every encoder is back on SDPA after the block."""
    from electra.model import ElectraForSequenceClassification, ElectraForTokenClassification, explicit_attention

    torch.manual_seed(3)
    ids, attn, types = _inputs()
    real = attn.bool()
    for model in (ElectraForSequenceClassification(CFG, 3).eval(), ElectraForTokenClassification(CFG, 5).eval()):
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.3)
            sdpa = model(ids, attn, types)
            with explicit_attention(model):
                assert model.electra.explicit_attention
                explicit = model(ids, attn, types)
                unmasked = model(ids, None, types)
            again = model(ids, attn, types)
        if sdpa.dim() == 3:
            sdpa, explicit, again = sdpa[real], explicit[real], again[real]
        torch.testing.assert_close(explicit, sdpa, atol=1e-5, rtol=1e-4)
        assert not model.electra.explicit_attention and torch.equal(again, sdpa)
        assert unmasked.shape == model(ids, None, types).shape
        torch.testing.assert_close(unmasked, model(ids, None, types), atol=1e-5, rtol=1e-4)
