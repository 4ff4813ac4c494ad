"""`electra serve` (electra/serving): answers equal electra.load().predict whatever the batching, limits and
errors as docs/serve.md says, SIGTERM drains, startup failures are one line. Loopback only, bounded in time."""

import argparse
import asyncio
import json
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")
import uvicorn  # noqa: E402

import electra  # noqa: E402
from electra.errors import UserError  # noqa: E402
from electra.serving import ServeOptions, create_app  # noqa: E402
from toy_tasks import FILLER, GOOD, NOUNS, VERBS, save_toy_model, sentence, write_conll, write_squad, write_sst  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread while these tests run: on a small shared machine torch's spinning threads, fighting
    the clients and the server's event loop, make a tiny model's batch 50x slower."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny fine-tuned classifier, tagger and QA model (a few seconds in all)."""
    from electra.finetuning.finetune import finetune

    root = tmp_path_factory.mktemp("serve")
    (root / "toy").mkdir()
    hf = save_toy_model(root / "toy", [], 128)
    write_sst(root / "train.tsv", 64, 0)
    write_sst(root / "dev.tsv", 32, 1)
    finetune(hf, "classification", root / "train.tsv", root / "dev.tsv", root / "cls",
             overrides=["epochs=1", "batch_size=16"], progress=False)
    write_conll(root / "train.conll", 64, 0)
    write_conll(root / "dev.conll", 32, 1)
    finetune(hf, "tagging", root / "train.conll", root / "dev.conll", root / "tag",
             overrides=["epochs=1", "batch_size=16"], progress=False)
    write_squad(root / "train.json", 32, 0)
    write_squad(root / "dev.json", 16, 1)
    finetune(hf, "qa", root / "train.json", root / "dev.json", root / "qa",
             overrides=["epochs=1", "batch_size=16", "max_seq_length=64", "doc_stride=32", "max_query_length=16"],
             progress=False)
    return {"classification": root / "cls", "tagging": root / "tag", "qa": root / "qa", "root": root}


class Running:
    """An app on uvicorn in a thread, on a free loopback port; ``stop()`` ends it (drains as on SIGTERM)."""

    def __init__(self, app, ready: bool = True):
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        if ready:
            wait_ready(self.url)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        assert not self.thread.is_alive()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_ready(url: str, headers=None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/ready", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.05)


def one_line_error(response) -> str:
    """The error message of a response whose body must be exactly one JSON line {"error": "..."}."""
    text = response.text
    assert "\n" not in text.strip(), text
    body = json.loads(text)
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    return body["error"]


def same_rows(got: list, want: list, tol: float = 1e-5) -> None:
    """Rows equal but for float noise: labels, tags and answers equal; probabilities within ``tol``."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = {k: v for k, v in g.items() if k != "truncated"}
        assert g.keys() == w.keys(), (g, w)
        for k, v in w.items():
            if k == "probabilities":
                assert g[k].keys() == v.keys()
                assert all(abs(g[k][label] - p) <= tol for label, p in v.items()), (g, w)
            elif k in ("score", "null_score_diff"):
                assert abs(g[k] - v) <= 1e-3, (g, w)
            else:
                assert g[k] == v, (g, w)


def post(client, url, body, **kw):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(url + "/v1/predict", content=data, headers={"content-type": "application/json",
                                                                     **kw.pop("headers", {})}, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slow_batches(app, seconds: float) -> None:
    """Make every model batch of ``app`` take at least ``seconds`` (to hold requests in flight)."""
    batcher = app.state.service.batcher
    run = batcher.run_batch

    def slow(features):
        time.sleep(seconds)
        return run(features)

    batcher.run_batch = slow


def long_text(rng, words=200) -> str:
    return " ".join(rng.choice(FILLER + GOOD) for _ in range(words))


# --------------------------------------------------------------------------- (a) mixed load

def mixed_requests(rng) -> list:
    """400 requests: (body, "valid", items) or (body, "invalid", expected status or None for any 4xx)."""
    invalid = [
        (b'{"inputs": ["a film", ', 422),                            # malformed JSON
        (b'{"inputs": "a film"}', 422),                              # wrong type
        (b'{"inputs": [1, 2]}', 422),                                # wrong item types
        (b'{"inputs": []}', 422),                                    # empty list
        (b'{"inputs": [""]}', 422),                                  # empty string
        (b'{"inputs": ["   ", "a film"]}', 422),                     # blank string
        (b'{"inputs": [["a film", ""]]}', 422),                      # empty text pair
        (b'\xff\xfe{"inputs": ["a"]}', 400),                         # invalid UTF-8
        (b'{"inputs": ["' + b"a " * 40000 + b'"]}', 413),            # past the (test's) 64 KB payload limit
        (json.dumps({"inputs": ["a"] * 10000}).encode(), 413),      # 10,000 items
        (json.dumps({"inputs": ["a film"] * 9}).encode(), 413),     # past max_client_batch 8
        (b'{"input": ["a film"]}', 422),                             # missing key
        (b'{"inputs": ["a film"], "extra": 1}', 422),                # unknown key
        (b'{"inputs": ["a film"], "truncate": "yes"}', 422),         # wrong type of truncate
        (b'{"inputs": [{"question": "q", "context": "c"}]}', 422),   # a qa ITEM for a classifier
        (b'{"inputs": [["a", "b", "c"]]}', 422),                     # three texts
        (b'[]', 422), (b'null', 422), (b'', 422),
        (json.dumps({"inputs": [long_text(rng)], "truncate": False}).encode(), 422),  # too long, no truncation
    ]
    requests = []
    for i in range(400):
        if i % 5 < 2:
            body, status = invalid[(i // 5 * 2 + i % 5) % len(invalid)]
            requests.append((body, "invalid", status))
            continue
        items = []
        for _ in range(rng.randint(1, 8)):
            kind = rng.random()
            if kind < 0.6:
                items.append(sentence(rng, rng.randint(0, 1), (1, 10)))
            elif kind < 0.9:
                items.append([sentence(rng, 1, (1, 5)), sentence(rng, 0, (1, 5))])
            else:
                items.append(long_text(rng))  # truncated: the row says so
        requests.append((json.dumps({"inputs": items}).encode(), "valid", items))
    return requests


def test_mixed_load_answers_equal_predict_and_errors_are_4xx_json(models):
    app = create_app(models["classification"], payload_limit=65536, max_client_batch=8, max_batch_size=16)
    requests = mixed_requests(random.Random(0))
    answers: list = [None] * len(requests)

    with Running(app) as server:
        def client(k: int) -> None:
            with httpx.Client(timeout=30) as c:
                for i in range(k, len(requests), 16):
                    r = post(c, server.url, requests[i][0])
                    answers[i] = (r.status_code, r.text, r.headers)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        metrics = httpx.get(server.url + "/metrics").text

    model = electra.load(models["classification"])
    valid = 0
    for (body, kind, expect), (status, text, headers) in zip(requests, answers):
        assert status < 500, (status, text)
        if kind == "invalid":
            assert 400 <= status < 500, (body[:80], status, text)
            if expect is not None:
                assert status == expect, (body[:80], status, text)
            one_line_error(type("R", (), {"text": text})())
            continue
        assert status == 200, (status, text)
        rows = json.loads(text)["predictions"]
        same_rows(rows, model.predict(expect))
        for item, row in zip(expect, rows):  # exactly the long texts are flagged
            assert row.get("truncated", False) == (isinstance(item, str) and len(item.split()) >= 200)
        valid += 1
    assert valid == 240
    batches = float(re.search(r"^electra_batch_size_count (\S+)", metrics, re.M).group(1))
    assert batches >= 1


# --------------------------------------------------------------------------- (b) overload, timeout

def rss_kb(pid: int | str = "self") -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))


def test_overload_gives_429_with_retry_after_and_accepted_requests_complete(models):
    app = create_app(models["classification"], max_concurrent=4, max_batch_size=2)
    slow_batches(app, 0.05)
    with Running(app) as server:
        before = rss_kb()
        statuses = []
        lock = threading.Lock()
        for _round in range(3):
            barrier = threading.Barrier(24)

            def client():
                with httpx.Client(timeout=30) as c:
                    barrier.wait()
                    r = post(c, server.url, {"inputs": ["a great film", "a dull film"]})
                    with lock:
                        statuses.append(r.status_code)
                    if r.status_code == 429:
                        assert r.headers.get("retry-after") == "1"
                        assert "max_concurrent" in one_line_error(r)
                    else:
                        assert r.status_code == 200, r.text
                        assert len(r.json()["predictions"]) == 2

            threads = [threading.Thread(target=client) for _ in range(24)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        after = rss_kb()
        assert len(statuses) == 72
        assert statuses.count(429) > 0 and statuses.count(200) >= 4 and set(statuses) <= {200, 429}
        assert after - before < 200_000, (before, after)  # KB: the queue does not grow past max_concurrent
        assert app.state.service.in_flight == 0 and app.state.service.batcher.queued() == 0


def test_slow_answer_is_504_and_the_service_goes_on(models):
    app = create_app(models["classification"], request_timeout=0.3)
    with Running(app) as server:
        slow_batches(app, 0.6)
        r = post(httpx, server.url, {"inputs": ["a great film"]}, timeout=10)
        assert r.status_code == 504 and "request_timeout" in one_line_error(r)
        app.state.service.batcher.run_batch = app.state.service.run_batch
        time.sleep(0.4)
        r = post(httpx, server.url, {"inputs": ["a great film"]}, timeout=10)
        assert r.status_code == 200


# --------------------------------------------------------------------------- (c) SIGTERM, (d) startup

SLOW_SERVER = ("import sys, time; from electra.serving import batcher as b; run = b.Batcher._run; "
               "b.Batcher._run = lambda self, batch: (time.sleep(0.3), run(self, batch))[1]; "
               "from electra.cli import main; sys.exit(main(['serve', *sys.argv[1:]]))")


def test_sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_0(models):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SERVER, str(models["classification"]), "--port", str(port),
                             "--max-batch-size", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(url, timeout=60)
        results = []

        def client(i):
            r = post(httpx, url, {"inputs": [f"a great film number {i}"]}, timeout=30)
            results.append((r.status_code, r.json()))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # all accepted; 5 batches of 0.3 s each: most still in flight
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):
            post(httpx, url, {"inputs": ["too late"]}, timeout=5)
        for t in threads:
            t.join(30)
        assert [s for s, _ in results] == [200] * 5, results
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert "Traceback" not in err


def test_workers_share_the_port_add_up_their_metrics_and_stop_on_sigterm(models):
    """--workers 2: two processes answer on one port with the same rows as predict; /metrics, whichever worker
    answers it, counts every worker's requests; SIGTERM stops them all with exit 0."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "electra", "serve", str(models["classification"]), "--port",
                             str(port), "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids, deadline = set(), time.monotonic() + 90
        while len(pids) < 2:  # each request on a new connection: the kernel hands them to either worker
            assert time.monotonic() < deadline and proc.poll() is None, "two workers not answering in time"
            try:
                ready = httpx.get(url + "/ready", timeout=2)  # the worker that answers says it is ready
                if ready.status_code == 200:
                    pids.add(ready.json()["pid"])
            except httpx.TransportError:
                time.sleep(0.1)
        assert proc.pid not in pids
        texts = [f"a {'great' if i % 2 else 'dull'} film number {i}" for i in range(40)]
        answers = concurrent_answers(url, [{"inputs": [t]} for t in texts])
        assert [r.status_code for r in answers] == [200] * len(texts)
        same_rows([r.json()["predictions"][0] for r in answers], electra.load(models["classification"]).predict(texts))
        for _ in range(4):  # on new connections: more than one worker renders, each the same sums
            text = httpx.get(url + "/metrics", timeout=5).text
            assert re.search(r'^electra_requests_total\{route="/v1/predict",status="200"\} 40\.0$', text, re.M), text
            assert float(re.search(r"^electra_inputs_total (\S+)", text, re.M).group(1)) == 40.0
            assert re.search(r"^electra_ready 1\.0", text, re.M)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in proc.stderr.read()


def run_serve(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "electra", "serve", *map(str, args)], capture_output=True,
                          text=True, timeout=60)


def test_startup_failures_are_one_line_and_nonzero(models, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(models["classification"] / "model", corrupt)
    (corrupt / "model.safetensors").write_bytes(b"not safetensors at all")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        for args, words in [((tmp_path / "missing",), "no such folder"), ((corrupt,), "model.safetensors"),
                            ((models["classification"], "--port", busy.getsockname()[1]), "cannot listen")]:
            p = run_serve(*args)
            assert p.returncode != 0, p
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("electra: error:") and words in lines[0], p.stderr
            assert "Traceback" not in p.stderr + p.stdout
    finally:
        busy.close()


# --------------------------------------------------------------------------- (e) auth, (f) ready/info/metrics

def test_api_key_guards_every_route_but_health(models, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-key\n")
    app = create_app(models["classification"], api_key_file=key_file)
    good = {"Authorization": "Bearer s3cret-key"}
    with Running(app, ready=False) as server:
        wait_ready(server.url, headers=good)
        assert httpx.get(server.url + "/health").status_code == 200
        for route in ("/ready", "/info", "/metrics", "/docs", "/openapi.json"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-key"},
                            {"Authorization": "s3cret-key"}):
                r = httpx.get(server.url + route, headers=headers)
                assert r.status_code == 401 and "API key" in one_line_error(r)
            assert httpx.get(server.url + route, headers=good).status_code == 200
        assert post(httpx, server.url, {"inputs": ["a film"]}).status_code == 401
        r = post(httpx, server.url, {"inputs": ["a film"]}, headers=good)
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1
    (tmp_path / "empty").write_text("\n")
    for bad in (tmp_path / "empty", tmp_path / "nope"):
        with pytest.raises(UserError, match="API key file"):
            create_app(models["classification"], api_key_file=bad)


def test_ready_info_and_metrics(models):
    app = create_app(models["classification"])

    async def before_startup():  # no lifespan: not warmed up
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return (await c.get("/ready")), (await c.get("/health")), (await c.post("/v1/predict", json={"inputs": ["a"]}))

    ready, health, predict = asyncio.run(before_startup())
    assert ready.status_code == 503 and "not ready" in one_line_error(ready)
    assert health.status_code == 200 and predict.status_code == 503

    with Running(app) as server:
        info = httpx.get(server.url + "/info").json()
        assert info["task"] == "classification" and info["labels"] == ["0", "1"]
        assert info["max_seq_length"] == 128 and info["backend"] == "pytorch"
        assert info["version"] == electra.__version__ and info["limits"]["max_batch_tokens"] == 16384
        for _ in range(3):
            assert post(httpx, server.url, {"inputs": ["a great film", ["a film", "dull"]]}).status_code == 200
        assert post(httpx, server.url, {"inputs": []}).status_code == 422
        assert httpx.get(server.url + "/nowhere").status_code == 404
        assert httpx.get(server.url + "/docs").status_code == 200
        text = httpx.get(server.url + "/metrics").text
    assert 'electra_requests_total{route="/v1/predict",status="200"} 3.0' in text
    assert 'electra_requests_total{route="/v1/predict",status="422"} 1.0' in text
    assert 'electra_requests_total{route="other",status="404"} 1.0' in text
    assert 'electra_request_duration_seconds_bucket{le="+Inf",route="/v1/predict",status="200"} 3.0' in text
    for name in ("electra_queue_size", "electra_requests_in_flight", "electra_batch_size_bucket",
                 "electra_batch_tokens_bucket", "electra_tokens_total", "electra_batch_duration_seconds_count"):
        assert re.search(rf"^{name}\b", text, re.M), name
    assert float(re.search(r"^electra_inputs_total (\S+)", text, re.M).group(1)) == 6.0
    assert float(re.search(r"^electra_tokens_total (\S+)", text, re.M).group(1)) > 0
    assert re.search(r"^electra_ready 1\.0", text, re.M)


# --------------------------------------------------------------------------- (g) tagging and qa

def concurrent_answers(url, bodies, threads=4) -> list:
    answers = [None] * len(bodies)

    def client(k):
        with httpx.Client(timeout=30) as c:
            for i in range(k, len(bodies), threads):
                answers[i] = post(c, url, bodies[i])

    ts = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return answers


def test_tagging_and_qa_through_the_service_equal_predict(models):
    rng = random.Random(1)
    tag_items = [[" ".join(rng.choice(NOUNS + VERBS) for _ in range(rng.randint(1, 12)))
                  if rng.random() < 0.5 else [rng.choice(NOUNS + VERBS) for _ in range(rng.randint(1, 12))]
                  for _ in range(rng.randint(1, 6))] for _ in range(24)]
    tag_items[0].append(" ".join(["dog"] * 300))  # past 128 tokens: truncated
    qa_items = []
    for _ in range(16):
        items = []
        for _ in range(rng.randint(1, 4)):
            name = rng.choice(NOUNS)
            filler = " ".join(rng.choice(FILLER) for _ in range(rng.randint(2, 80)))  # up to several windows
            items.append({"question": "what is the answer ?", "context": f"{filler} . the answer is {name} ."})
        qa_items.append(items)
    qa_items[0].append({"question": " ".join(["what"] * 30) + " ?", "context": "the answer is dog ."})

    for task, batches in (("tagging", tag_items), ("qa", qa_items)):
        app = create_app(models[task], max_batch_size=8)
        with Running(app) as server:
            answers = concurrent_answers(server.url, [{"inputs": items} for items in batches])
            wrong = post(httpx, server.url, {"inputs": [123]})
            refused = post(httpx, server.url, {"inputs": batches[0], "truncate": False})
        model = electra.load(models[task])
        for items, r in zip(batches, answers):
            assert r.status_code == 200, r.text
            same_rows(r.json()["predictions"], model.predict(items))
        first = answers[0].json()["predictions"]
        assert first[-1].get("truncated") is True and all("truncated" not in row for row in first[:-1])
        assert wrong.status_code == 422 and f"a {task} input" in one_line_error(wrong)
        assert refused.status_code == 422 and f"inputs[{len(batches[0]) - 1}]" in one_line_error(refused)


# --------------------------------------------------------------------------- options

def test_options_are_checked_in_one_line(models):
    for bad, words in [(dict(max_batch_size=0), "max_batch_size"), (dict(port=70000), "port"),
                       (dict(request_timeout=0), "request_timeout"), (dict(batch_window_ms=-1), "batch_window_ms"),
                       (dict(workers=1.5), "workers"), (dict(nope=1), "unknown option")]:
        with pytest.raises(UserError, match=words):
            ServeOptions.of(bad)
    with pytest.raises(UserError, match="max_batch_tokens 64 is below the model's max_seq_length 128"):
        create_app(models["classification"], max_batch_tokens=64)
    with pytest.raises(UserError, match="pre-trained model, not a fine-tuned one"):
        create_app(models["root"] / "toy" / "hf")


# --------------------------------------------------------------------------- batching

def test_batcher_groups_requests_by_length_under_the_token_budget():
    from electra.serving.batcher import Batcher

    gate = threading.Event()
    batches = []

    def run(features):
        gate.wait(10)
        batches.append([len(f["input_ids"]) for f in features])
        return [sum(f["input_ids"]) for f in features]

    b = Batcher(run, max_batch_tokens=40, max_batch_size=4)
    b.start()
    first = b.submit([{"input_ids": [1] * 3}])  # taken at once: the worker then waits on the gate
    time.sleep(0.1)
    jobs = [b.submit([{"input_ids": [i] * n} for n in lengths])
            for i, lengths in enumerate([(10, 2), (5,), (9, 3, 4), (20,)], 1)]
    gone = b.submit([{"input_ids": [7] * 6}])
    gone.cancel()  # a request that gave up: dropped, never run
    gate.set()
    assert first.future.result(10) == [3]
    assert [j.future.result(10) for j in jobs] == [[10, 2], [10], [27, 9, 12], [80]]
    b.stop(10)
    assert batches[0] == [3]
    for lengths in batches:
        assert len(lengths) <= 4 and len(lengths) * max(lengths) <= 40, batches
    assert sorted(n for lengths in batches[1:] for n in lengths) == [2, 3, 4, 5, 9, 10, 20]
    assert len(batches) < 1 + 4  # requests shared batches
    assert 6 not in [n for lengths in batches for n in lengths]


def test_requests_batched_together_answer_as_each_alone(models):
    app = create_app(models["classification"], max_batch_size=32)
    rng = random.Random(3)
    bodies = [{"inputs": [sentence(rng, rng.randint(0, 1), (1, 12)) for _ in range(rng.randint(1, 4))]}
              for _ in range(12)]
    with Running(app) as server:
        slow_batches(app, 0.3)  # the first request's batch runs while the others queue up
        answers = concurrent_answers(server.url, bodies, threads=12)
        text = httpx.get(server.url + "/metrics").text
    batches = float(re.search(r"^electra_batch_size_count (\S+)", text, re.M).group(1))
    assert batches < 12  # padded together with other requests' texts
    model = electra.load(models["classification"])
    for body, r in zip(bodies, answers):
        assert r.status_code == 200, r.text
        same_rows(r.json()["predictions"], model.predict(body["inputs"]))


# --------------------------------------------------------------------------- docs/serve.md's manifest

def test_the_kubernetes_manifest_in_the_docs_matches_the_command():
    yaml = pytest.importorskip("yaml")
    from electra.cli import build_parser as electra_parser

    def build_parser():  # the `electra serve` sub-command's parser
        verbs = next(a for a in electra_parser()._actions if isinstance(a, argparse._SubParsersAction))
        return verbs.choices["serve"]

    text = (ROOT / "docs" / "serve.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    docs = list(yaml.safe_load_all(block))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["electra", "serve"]
    args = build_parser().parse_args(command[2:])  # every flag is one the command takes
    assert args.host == "0.0.0.0"
    assert container["ports"][0]["containerPort"] == args.port
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": args.port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": args.port}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == args.port
    assert service["spec"]["ports"][0]["targetPort"] == args.port
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > args.timeout + 5
    # every route and option of the command is documented
    for action in build_parser()._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in ("--help", "--quiet"):  # (every verb has --quiet)
                assert f"`{flag}" in text, flag
    for route in ("/v1/predict", "/health", "/ready", "/info", "/metrics", "/docs"):
        assert route in text


# --------------------------------------------------------------------------- an `electra export-onnx` folder

def test_an_onnx_folder_serves_what_load_predicts_whatever_the_batching(models, tmp_path):
    """The service on ONNX Runtime (fp32): concurrent requests, batched together, equal electra.load's
    predictions on the same folder (labels equal, probabilities within 1e-4) and /info names the backend."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    electra.export_onnx(models["classification"], out)
    reference = electra.load(out)
    assert reference.backend == "onnx-fp32"
    rng = random.Random(3)
    requests = [[sentence(rng, rng.randint(0, 1), filler=rng.randint(1, 8)) for _ in range(rng.randint(1, 4))]
                for _ in range(24)]
    with Running(create_app(out, ServeOptions(max_batch_size=8))) as server:
        assert httpx.get(server.url + "/info").json()["backend"] == "onnx-fp32"
        answers = [None] * len(requests)

        def client(i):
            answers[i] = post(httpx, server.url, {"inputs": requests[i]}, timeout=30)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    for items, response in zip(requests, answers):
        assert response.status_code == 200, response.text
        for got, want in zip(response.json()["predictions"], reference.predict(items)):
            assert got["label"] == want["label"]
            assert max(abs(got["probabilities"][k] - want["probabilities"][k]) for k in want["probabilities"]) <= 1e-4


def test_the_listening_socket_sends_small_writes_at_once():
    """TCP_NODELAY on the socket the service listens on (accepted connections inherit it): without it a
    keep-alive response's body waits for the client's delayed ACK, 40 ms a request."""
    from electra.serving.launch import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        client = socket.create_connection(sock.getsockname())
        accepted, _ = sock.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        accepted.close()
        client.close()
    finally:
        sock.close()
