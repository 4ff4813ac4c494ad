"""The fused AdamW kernel that pre-training and fine-tuning build on CPU takes the same steps as torch's
plain per-parameter AdamW (the rule for every speed optimisation: it keeps a test against the plain path)."""

import copy

import pytest
import torch

from electra.config import ModelConfig, TrainConfig
from electra.finetuning import finetune
from electra.finetuning.finetune import FinetuneConfig
from electra.model import ElectraForSequenceClassification
from electra.pretraining import setup as pretraining_setup
from electra.pretraining.objective import ElectraPretrainer

CFG = ModelConfig(vocab_size=50, embedding_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=32, max_position_embeddings=32)
GEN = ModelConfig(vocab_size=50, embedding_size=8, hidden_size=8, num_hidden_layers=2, num_attention_heads=1,
                  intermediate_size=16, max_position_embeddings=32)


def plain_copy(opt: torch.optim.AdamW, params: list[torch.nn.Parameter]) -> torch.optim.AdamW:
    """The same groups and hyper-parameters over ``params`` (a copied model's, in the same order), unfused."""
    it = iter(params)
    # A group holds every setting, the kernel choice too: keep the hyper-parameters, drop fused/foreach.
    groups = [{**{k: v for k, v in g.items() if k not in ("params", "fused", "foreach")},
               "params": [next(it) for _ in g["params"]]} for g in opt.param_groups]
    plain = torch.optim.AdamW(groups, fused=False, foreach=False)
    assert not any(g["fused"] or g["foreach"] for g in plain.param_groups)
    return plain


def run(model: torch.nn.Module, opt: torch.optim.Optimizer, grads: list[list[torch.Tensor]]) -> None:
    params = [p for g in opt.param_groups for p in g["params"]]
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("which", ["pretrain", "finetune"])
def test_the_built_optimiser_is_fused_on_cpu_and_steps_like_plain_adamw(which):
    torch.manual_seed(0)
    if which == "pretrain":
        model = ElectraPretrainer(CFG, GEN)
        opt = pretraining_setup.build_optimizer(model, TrainConfig(learning_rate=1e-3, weight_decay=0.01), torch.device("cpu"))
    else:
        model = ElectraForSequenceClassification(CFG, 2)
        opt = finetune.build_optimizer(model, FinetuneConfig(learning_rate=1e-3, layerwise_lr_decay=0.8,
                                                            weight_decay=0.01), torch.device("cpu"))
    assert opt.defaults["fused"] is True
    twin = copy.deepcopy(model)
    by_id = {id(p): name for name, p in model.named_parameters()}
    twin_params = dict(twin.named_parameters())
    plain = plain_copy(opt, [twin_params[by_id[id(p)]] for g in opt.param_groups for p in g["params"]])
    params = [p for g in opt.param_groups for p in g["params"]]
    grads = [[torch.randn_like(p) for p in params] for _ in range(5)]  # the same gradients for both
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    run(model, opt, grads)
    run(twin, plain, grads)
    for name, p in model.named_parameters():
        assert not torch.equal(p, start[name]), f"{name} did not move"  # the steps did something
        torch.testing.assert_close(p, twin_params[name], rtol=1e-5, atol=1e-6, msg=name)
