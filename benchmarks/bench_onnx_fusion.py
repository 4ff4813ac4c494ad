"""What fusing the attention for ONNX Runtime is worth, on this machine, in one invocation: a fine-tuned folder
exported the way `electra export-onnx` does (explicit attention, fused by ONNX Runtime's transformer optimizer)
and the way it did before (torch's SDPA exported as it is, no fusion), both quantised the same way, timed as
ONNX Runtime sessions alone on one 128-token input, in alternating blocks so that a slow spell of the machine
hits both.

    python benchmarks/bench_onnx_fusion.py runs/small-rt [--blocks 5] [--calls 100]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from electra.finetuning import onnx_export
from electra.finetuning.predict import load_finetuned, resolve_finetuned


def export(model, task: str, max_len: int, folder: Path, fused: bool) -> dict[str, Path]:
    fp32, int8 = folder / "model.onnx", folder / "model.int8.onnx"
    if fused:
        graph, _ = onnx_export._fuse_for_onnxruntime(onnx_export._export_graph(model, task, max_len), model.config)
    else:  # the graph of SDPA, as the exporter makes it
        with _sdpa_export():
            graph = onnx_export._export_graph(model, task, max_len)
    fp32.write_bytes(graph.SerializeToString())
    onnx_export._quantize(fp32, int8)
    return {"fp32": fp32, "int8": int8}


@contextlib.contextmanager
def _sdpa_export():
    saved = onnx_export.explicit_attention, onnx_export._split_mask_unsqueeze
    onnx_export.explicit_attention = lambda model: contextlib.nullcontext()
    onnx_export._split_mask_unsqueeze = lambda proto: None
    try:
        yield
    finally:
        onnx_export.explicit_attention, onnx_export._split_mask_unsqueeze = saved


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="a fine-tuned folder")
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--calls", type=int, default=100)
    args = p.parse_args()
    task, model, _, max_len = load_finetuned(resolve_finetuned(args.model), torch.device("cpu"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-onnx-fusion-"))
    files = {}
    for fused in (False, True):
        folder = tmp / ("fused" if fused else "sdpa")
        folder.mkdir()
        for variant, path in export(model, task.name, max_len, folder, fused).items():
            files[f"{variant} {'fused' if fused else 'sdpa'}"] = path
    ids = np.random.default_rng(0).integers(5, model.config.vocab_size, (1, min(128, max_len)))
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    for threads in (0, 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        sessions = {k: ort.InferenceSession(str(v), options, providers=["CPUExecutionProvider"])
                    for k, v in files.items()}
        medians = {k: [] for k in sessions}
        for _ in range(args.blocks):
            for name, session in sessions.items():
                for _ in range(10):
                    session.run(None, feed)
                seconds = []
                for _ in range(args.calls):
                    start = time.perf_counter()
                    session.run(None, feed)
                    seconds.append(time.perf_counter() - start)
                medians[name].append(round(1000 * statistics.median(seconds), 2))
        print(json.dumps({"intra_op_threads": threads or "default", "block_median_ms": medians}), flush=True)


if __name__ == "__main__":
    main()
