"""Run the real `pretrain` loop on a GPU on synthetic 128-token data and report its throughput.

    PYTHONPATH=.:tests python benchmarks/gpu_pretrain_smoke.py --preset small --batch 128 --steps 300

Checks that the CUDA path (bf16 autocast, fused AdamW, optional torch.compile) trains with finite,
falling losses, and prints steps/s and tokens/s of the whole loop (data, masking, step, logging).
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic import make_data_dir  # noqa: E402

from electra.pretraining.pretrain import pretrain  # noqa: E402
from electra.runtime.metrics_log import read_metrics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--compile", default="false,true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    data = make_data_dir(root / "data", n_train=20_000, n_valid=256, length=128, vocab=30522)
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}")
    for comp in args.compile.split(","):
        run = root / f"run-{comp}"
        torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
        t0 = time.perf_counter()
        pretrain(data, run, preset=args.preset, max_steps=args.steps, progress=False,
                 overrides=[f"train.batch_size={args.batch}", "train.log_every=50", "train.eval_every=100000",
                            "train.save_every=100000", f"train.compile={comp}"])
        wall = time.perf_counter() - t0
        recs = read_metrics(run / "metrics.jsonl")
        train = [r for r in recs if "gen_loss" in r]
        steady = train[2:] if len(train) > 3 else train
        tps = sorted(r["tokens_per_s"] for r in steady)[len(steady) // 2]
        sps = sorted(r["steps_per_s"] for r in steady)[len(steady) // 2]
        mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
        print(f"compile={comp}: wall {wall:.1f}s for {args.steps} steps; steady median {sps:.2f} steps/s, "
              f"{tps:,.0f} tokens/s, {sps * args.batch:,.0f} seq/s; peak mem {mem:.2f} GiB; "
              f"gen_loss {train[0]['gen_loss']:.3f}->{train[-1]['gen_loss']:.3f}, "
              f"disc_loss {train[0]['disc_loss']:.3f}->{train[-1]['disc_loss']:.3f}")
        print(f"  projected 1M steps at this rate: {1e6 / sps / 3600:.1f} h")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
