"""Where does the time of one pre-training step go? Times the loader alone, the step alone (eager and,
optionally, compiled) and prints a torch.profiler summary of the eager step.

    PYTHONPATH=. python3 benchmarks/profile_step.py --preset small --batch 128 [--compile]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic import make_data_dir  # noqa: E402

from electra.config import preset_config  # noqa: E402
from electra.data.loader import PretrainingData  # noqa: E402
from electra.pretraining.batches import BatchStream, masked_on_device  # noqa: E402
from electra.pretraining.objective import ElectraPretrainer  # noqa: E402
from electra.pretraining.setup import Run, build_optimizer  # noqa: E402
from electra.pretraining.step import train_step  # noqa: E402
from electra.runtime.device import autocast_for  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = PretrainingData(make_data_dir(Path(tempfile.mkdtemp()) / "d", n_train=4096, length=128, vocab=30522))
    cfg = preset_config(args.preset, vocab_size=30522)
    t = cfg.train

    stream = BatchStream(data, args.batch, 0, t.seed, pin_memory=device.type == "cuda")
    next(stream)
    t0 = time.perf_counter()
    batches = [next(stream) for _ in range(args.steps)]
    print(f"loader alone: {args.steps / (time.perf_counter() - t0):.1f} batches/s")
    stream.close()

    model = ElectraPretrainer(cfg.model, cfg.generator_model_config()).to(device)
    opt = build_optimizer(model, t, device)
    autocast = autocast_for(device, "auto")

    def step(fn, batch):  # the training loop's own step (electra/pretraining/step.py)
        run = Run(cfg=cfg, model=model, step_fn=fn, optimizer=opt, device=device, autocast=autocast)
        return train_step(run, masked_on_device(batch, data.special_ids, t, device)).stats

    variants = [("eager", model)] + ([("compiled", torch.compile(model))] if args.compile else [])
    for name, fn in variants:
        for b in batches[:3]:
            step(fn, b)
        sync(device)
        t0 = time.perf_counter()
        for b in batches:
            step(fn, b)
        sync(device)
        dt = (time.perf_counter() - t0) / len(batches)
        print(f"{name} step alone: {dt * 1e3:.1f} ms/step, {args.batch / dt:,.0f} seq/s")

    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        for b in batches[:5]:
            step(model, b)
        sync(device)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))
    if device.type == "cuda":
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=40))


if __name__ == "__main__":
    main()
