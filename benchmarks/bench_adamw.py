"""Time one AdamW update over the parameters of a preset's pre-training model: torch's per-parameter loop
(the default on CPU), its foreach and its fused kernel, alternating after warm-up, medians reported.

    python benchmarks/bench_adamw.py --preset small --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from electra.config import TrainConfig, preset_config
from electra.pretraining.objective import ElectraPretrainer
from electra.pretraining.setup import parameter_groups

KERNELS = {"loop": {"foreach": False, "fused": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="updates per timed round")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = preset_config(args.preset, vocab_size=args.vocab)
    t: TrainConfig = cfg.train
    runs = {}
    for name, kw in KERNELS.items():
        torch.manual_seed(0)
        model = ElectraPretrainer(cfg.model, cfg.generator_model_config())
        opt = torch.optim.AdamW(parameter_groups(model, t.weight_decay), lr=t.learning_rate,
                                betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon, **kw)
        for g in opt.param_groups:
            for p in g["params"]:
                p.grad = torch.randn_like(p) * 1e-3
        runs[name] = (model, opt)
    n_params = sum(p.numel() for g in runs["loop"][1].param_groups for p in g["params"])

    def timed(opt: torch.optim.Optimizer) -> float:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            opt.step()
        return (time.perf_counter() - t0) / args.steps

    for _, opt in runs.values():  # warm-up: the state tensors are allocated at the first step
        timed(opt)
    times = {name: [] for name in runs}
    order = list(runs)
    for r in range(args.repeats):
        for name in (order if r % 2 == 0 else order[::-1]):
            times[name].append(timed(runs[name][1]))
    ref = dict(runs["loop"][0].named_parameters())
    for name, (model, _) in runs.items():  # the same updates from the same start: the same weights
        diff = max((p - ref[k]).abs().max().item() for k, p in model.named_parameters())
        med = statistics.median(times[name])
        print(f"{args.preset} ({n_params / 1e6:.1f}M parameters, {args.threads} threads) {name:8s} "
              f"{med * 1e3:7.1f} ms/update (min {min(times[name]) * 1e3:.1f}, max {max(times[name]) * 1e3:.1f})"
              f"  x{statistics.median(times['loop']) / med:.2f} vs loop  max |dw| vs loop {diff:.1e}")


if __name__ == "__main__":
    main()
