"""What serving a fine-tuned ELECTRA costs on this machine (docs/serve.md): latency at batch 1, service throughput
under concurrent clients, and what int8 costs in accuracy and saves in size.

    benchmarks/prepare_serve_models.sh /work/bench        # the models (about 20 minutes on 2 cores)
    python benchmarks/bench_serve.py /work/bench --out /work/bench/serve.json

1. **Latency at batch 1** (p50, p99 over ``--latency-requests``, after warm-up): transformers' ``pipeline`` on the
   fine-tuned folder (fp32), ours on PyTorch fp32 (``electra.load(...).predict([item])``), ONNX Runtime fp32 and
   int8, for the tiny classifier and tagger at the tasks' real lengths (rotten_tomatoes / brown_pos dev) and at
   128 tokens, and the small classifier at 128 tokens.
2. **Service throughput** with 1, 4, 16 and 64 closed-loop clients on loopback, one dev sentence a request, for
   ``--seconds`` each: `electra serve` (PyTorch and ONNX int8) against the baseline a user would otherwise write,
   transformers' ``pipeline`` answering one request at a time behind the same kind of FastAPI route. Requests
   per second, p50 and p99 latency, errors, and the load generator's own CPU use.
3. **Accuracy and size**: fp32 against int8 on rotten_tomatoes dev (accuracy) and brown_pos dev (token accuracy),
   from each export's onnx.json (``electra export-onnx --dev``), and the model files' sizes.

Servers bind 127.0.0.1, get a fixed time and request count, and are stopped here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tasks"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def dev_sentences(limit: int = 2000) -> list[str]:
    lines = (DATA / "rotten_tomatoes" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0] for line in lines[:limit]]


def dev_word_lists(limit: int = 2000) -> list[list[str]]:
    blocks = (DATA / "brown_pos" / "dev.conll").read_text(encoding="utf-8").strip().split("\n\n")[:limit]
    return [[line.split("\t")[0] for line in block.splitlines()] for block in blocks]


def long_text(tokenizer, target: int = 128) -> str:
    """A text of dev words that tokenises to at least ``target`` tokens (truncated to the model's 128)."""
    words = " ".join(dev_sentences(200)).split()
    text, n = [], 0
    for w in words:
        text.append(w)
        n = len(tokenizer.encode(" ".join(text)).ids)
        if n >= target + 8:
            break
    return " ".join(text)


# --------------------------------------------------------------------------- 1. latency at batch 1

def time_calls(fn, items, warmup: int = 10) -> dict:
    for item in items[:warmup]:
        fn(item)
    seconds = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        seconds.append(time.perf_counter() - start)
    return {"p50_ms": round(1000 * statistics.median(seconds), 3), "p99_ms": round(1000 * percentile(seconds, 99), 3),
            "n": len(seconds)}


def latency(bench: Path, n: int) -> list[dict]:
    from transformers import pipeline

    import electra
    from electra.interop.onnx_model import load_onnx_model

    rows = []
    cases = [("tiny-rt", "text-classification", "real"), ("tiny-rt", "text-classification", "128"),
             ("tiny-pos", "token-classification", "real"), ("tiny-pos", "token-classification", "128"),
             ("small-rt", "text-classification", "128")]
    for name, kind, lengths in cases:
        ours = electra.load(bench / name)
        tokenizer = ours.tokenizer
        if kind == "text-classification":
            items = dev_sentences(n) if lengths == "real" else [long_text(tokenizer)] * n
        else:
            items = dev_word_lists(n) if lengths == "real" else [long_text(tokenizer).split()] * n
        as_text = [" ".join(i) if isinstance(i, list) else i for i in items]
        tokens = statistics.mean(min(128, len(tokenizer.encode(t).ids)) for t in as_text[:200])
        pipe = pipeline(kind, model=str(bench / name / "model"), device=-1)
        pipe_kwargs = {"truncation": True, "max_length": 128} if kind == "text-classification" else {}
        variants = {"transformers pipeline fp32": lambda t: pipe(t, **pipe_kwargs),
                    "ours PyTorch fp32": None, "ours ORT fp32": "fp32", "ours ORT int8": "int8"}
        for label, how in variants.items():
            if label.startswith("transformers"):
                result = time_calls(how, as_text)
            else:
                model = electra.load(bench / name) if how is None else electra.load(bench / f"{name}-onnx")
                if how is not None:
                    model.model = load_onnx_model(bench / f"{name}-onnx", model.model.config, model.task.name, how)
                result = time_calls(lambda item: model.predict([item]), items)
            rows.append({"model": name, "inputs": "dev lengths" if lengths == "real" else "128 tokens",
                         "mean_tokens": round(tokens, 1), "variant": label, **result})
            print(json.dumps(rows[-1]), flush=True)
    return rows


# --------------------------------------------------------------------------- 2. service throughput

BASELINE = textwrap.dedent('''
    import sys, threading
    from fastapi import FastAPI, Request
    from transformers import pipeline
    import uvicorn

    pipe = pipeline("text-classification", model=sys.argv[1], device=-1)
    lock = threading.Lock()
    app = FastAPI()

    @app.post("/v1/predict")
    def predict(body: dict):
        with lock:  # one request at a time, as a plain pipeline route answers
            rows = pipe(body["inputs"], truncation=True, max_length=128)
        return {"predictions": rows}

    @app.get("/ready")
    def ready():
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int, threads: int) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # the same for every server measured
    # The log goes to a file: a pipe nobody reads fills up and blocks the server (it logs every request).
    log = tempfile.NamedTemporaryFile("w+", prefix="bench-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True, env=env)
    proc.log = log.name
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {Path(log.name).read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server not ready in 120 s")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load_level(port: int, clients: int, seconds: float, sentences: list[str]) -> dict:
    """``clients`` threads, each sending one sentence a request and waiting for the answer, for ``seconds``."""
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(k: int) -> None:
        with httpx.Client(timeout=30) as http:
            i = k
            while time.monotonic() < stop_at:
                text = sentences[i % len(sentences)]
                i += clients
                start = time.perf_counter()
                try:
                    r = http.post(f"http://127.0.0.1:{port}/v1/predict", json={"inputs": [text]})
                    ok = r.status_code == 200
                except httpx.TransportError:
                    ok = False
                took = time.perf_counter() - start
                with lock:
                    if ok:
                        latencies.append(took)
                    else:
                        errors[0] += 1

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"clients": clients, "requests": len(latencies), "errors": errors[0],
            "rps": round(len(latencies) / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(1000 * percentile(latencies, 99), 1) if latencies else None,
            "load_generator_cpu_cores": round(cpu / wall, 2)}


def throughput(bench: Path, seconds: float, levels: list[int], threads: int) -> list[dict]:
    sentences = dev_sentences()
    rows = []
    servers = {
        "transformers pipeline, one request at a time (FastAPI)":
            lambda port: [sys.executable, "-c", BASELINE, str(bench / "tiny-rt" / "model"), str(port)],
        "electra serve (PyTorch fp32)":
            lambda port: [sys.executable, "-m", "electra", "serve", str(bench / "tiny-rt"), "--port", str(port)],
        "electra serve (ONNX int8)":
            lambda port: [sys.executable, "-m", "electra", "serve", str(bench / "tiny-rt-onnx"), "--port", str(port)],
    }
    for name, command in servers.items():
        port = free_port()
        proc = start(command(port), port, threads)
        try:
            load_level(port, 4, 2.0, sentences)  # warm-up
            for clients in levels:
                row = {"server": name, "server_threads": threads, **load_level(port, clients, seconds, sentences)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            stop(proc)
    return rows


# --------------------------------------------------------------------------- 3. accuracy and size

def accuracy(bench: Path) -> list[dict]:
    rows = []
    for name in ("tiny-rt", "tiny-pos", "small-rt"):
        record = json.loads((bench / f"{name}-onnx" / "onnx.json").read_text())
        dev = record.get("dev", {})
        primary = dev.get("primary_metric")
        rows.append({"model": name, "metric": primary,
                     "fp32": dev.get("fp32", {}).get(primary), "int8": dev.get("int8", {}).get(primary),
                     "int8_loss_points": dev.get("int8_loss_points"),
                     "pytorch_mb": round(record["bytes"]["pytorch"] / 1e6, 2),
                     "onnx_fp32_mb": round(record["bytes"]["fp32"] / 1e6, 2),
                     "onnx_int8_mb": round(record["bytes"]["int8"] / 1e6, 2),
                     "int8_over_fp32_size": round(record["bytes"]["int8"] / record["bytes"]["fp32"], 3)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def machine() -> dict:
    import onnxruntime
    import torch
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
            "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__, "load_average": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench", type=Path, help="the folder benchmarks/prepare_serve_models.sh filled")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--latency-requests", type=int, default=200)
    p.add_argument("--seconds", type=float, default=8.0, help="per concurrency level")
    p.add_argument("--levels", default="1,4,16,64")
    p.add_argument("--server-threads", type=int, default=1,
                   help="OMP_NUM_THREADS of every server process (torch's intra-op threads): on 2 cores shared with "
                        "the load generator, 1 serves more than 2")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: latency, throughput, accuracy")
    args = p.parse_args()
    skip = set(args.skip.split(","))
    result = {"machine": machine()}
    print(json.dumps(result["machine"]), flush=True)
    if "accuracy" not in skip:
        result["accuracy"] = accuracy(args.bench)
    if "latency" not in skip:
        result["latency"] = latency(args.bench, args.latency_requests)
    if "throughput" not in skip:
        result["throughput"] = throughput(args.bench, args.seconds, [int(x) for x in args.levels.split(",")],
                                          args.server_threads)
    result["machine"]["load_average_end"] = os.getloadavg()[0]
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
