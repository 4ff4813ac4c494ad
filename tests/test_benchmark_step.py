"""The speed benchmark times the product's own pre-training step: benchmarks/bench_pretrain.py's
``OursStep`` runs electra/pretraining/step.py's ``train_step(run, mb)`` on a ``Run`` with ``build_optimizer``,
not a copy of them."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from electra.config import apply_overrides, preset_config
from electra.pretraining import setup, step
from electra.pretraining.objective import ElectraPretrainer
from electra.pretraining.stats import STAT_NAMES

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pretrain.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_pretrain", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_pretrain"] = module
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_times_the_training_loops_step():
    """The benchmark's step is ``train_step(run, mb)`` on a ``Run``, as the loop calls it (the step sets its own
    learning rate, phase and dropout seed): two steps leave the weights the loop's function leaves."""
    bench = load_benchmark()
    assert bench.train_step is step.train_step and bench.build_optimizer is setup.build_optimizer
    cfg = apply_overrides(preset_config("tiny", vocab_size=bench.VOCAB), ["train.warmup_steps=1"])
    batch = bench.random_batch(4, 32, torch.device("cpu"))
    cpu = torch.device("cpu")
    autocast = bench.autocast_for(cpu, "auto")
    torch.manual_seed(0)
    timed = bench.OursStep(cfg, cpu, autocast, ElectraPretrainer(cfg.model, cfg.generator_model_config()))
    torch.manual_seed(0)
    model = ElectraPretrainer(cfg.model, cfg.generator_model_config())
    run = setup.Run(cfg=cfg, model=model, step_fn=model, optimizer=setup.build_optimizer(model, cfg.train, cpu),
                    device=cpu, autocast=autocast)
    for i in range(2):
        timed_loss = timed(batch)
        result = step.train_step(run, bench.masked(batch, cfg, i))
        run.state["step"] = i + 1
        assert result.lr == step.step_learning_rate(i, cfg.train) > 0
        s = dict(zip(STAT_NAMES, result.stats.tolist()))
        loss = s["mlm_loss_sum"] / s["num_selected"] + cfg.train.disc_weight * s["disc_loss_sum"] / s["disc_terms"]
        assert float(timed_loss) == pytest.approx(loss, rel=1e-6)  # float32 on one side, float64 here
    for (name, a), b in zip(timed.model.named_parameters(), model.parameters()):
        assert torch.equal(a, b), name
