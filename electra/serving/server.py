"""The FastAPI app of `electra serve`: ``create_app(model, options)``.

Routes: POST /v1/predict, GET /health, /ready, /info, /metrics, and FastAPI's /docs and /openapi.json.
Every error is answered with one JSON line ``{"error": "..."}``. docs/serve.md describes the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from electra.errors import UserError
from electra.serving.batcher import Batcher
from electra.serving.options import ENV_VAR, ServeOptions, read_api_key
from electra.serving.telemetry import CONTENT_TYPE_LATEST, Telemetry, log_setup
from electra.version import __version__

log = logging.getLogger("electra.serve")

WARM_UP = {"classification": "warm up", "tagging": "warm up", "qa": {"question": "warm up?", "context": "warm up"}}

PREDICT_SCHEMA = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["inputs"], "additionalProperties": False,
        "properties": {
            "inputs": {"type": "array", "minItems": 1, "description":
                       "ITEMs as electra.load(MODEL).predict takes them: classification a text or [text, pair]; "
                       "tagging a sentence or a list of words; qa {\"question\", \"context\"[, \"id\"]}",
                       "items": {}},
            "truncate": {"type": "boolean", "default": True, "description":
                         "truncate inputs longer than the model's max length (the row says \"truncated\": true); "
                         "false: such an input is a 422"}},
        "example": {"inputs": ["a gripping film", "dull and long"]}}}}},
    "responses": {
        "200": {"description": "one ROW per input, as `electra predict` writes them",
                "content": {"application/json": {"example": {"predictions": [
                    {"text": "a gripping film", "label": "1", "probabilities": {"0": 0.1, "1": 0.9}}]}}}},
        **{str(code): {"description": what, "content": {"application/json": {"example": {"error": "..."}}}}
           for code, what in [(400, "undecodable body (not UTF-8)"), (401, "missing or wrong API key"),
                              (413, "body past --payload-limit or more inputs than --max-client-batch"),
                              (422, "not valid JSON, or not {\"inputs\": [ITEM, ...]} for the model's task"),
                              (429, "--max-concurrent requests are already queued or running (Retry-After)"),
                              (503, "not ready yet"), (504, "no answer within --timeout")]}},
}


class ApiError(Exception):
    """An answer other than 200: its status, one-line message and headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())  # one line, always
        self.headers = dict(headers or {})


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=dict(headers or {}))


def load_model(model: Any):
    """A FineTunedModel from one or a folder (UserError for anything else)."""
    from electra.api import FineTunedModel, load

    if isinstance(model, FineTunedModel) or (hasattr(model, "predict") and hasattr(model, "task")
                                             and hasattr(model, "examples")):
        return model
    if not isinstance(model, (str, Path)):
        raise UserError(f"serve: MODEL is a fine-tuned folder or electra.load's result, not {type(model).__name__}")
    loaded = load(model)
    if not isinstance(loaded, FineTunedModel):
        raise UserError(f"{model}: a pre-trained model, not a fine-tuned one; serve the --out folder of "
                        f"`electra finetune` (or of `electra export-onnx`)")
    return loaded


SMALL_BODY = 4096  # bytes: a request this small is featurised and its rows made on the event loop


class Service:
    """The model, its batcher and the request bookkeeping of one app."""

    def __init__(self, model, options: ServeOptions, telemetry: Telemetry):
        from tokenizers import Tokenizer

        self.model = model
        self.options = options
        self.telemetry = telemetry
        self.task = model.task
        self.max_len = int(model.max_seq_length)
        self.backend = getattr(model, "backend", "pytorch")
        self.api_key = read_api_key(options.api_key_file) if options.api_key_file else None
        if options.max_batch_tokens < self.max_len:
            raise UserError(f"max_batch_tokens {options.max_batch_tokens} is below the model's max_seq_length "
                            f"{self.max_len}: a batch must hold at least one full-length input")
        full = Tokenizer.from_str(model.tokenizer.to_str())  # to measure inputs before truncation
        full.no_truncation()
        full.no_padding()
        self._full = full
        self.in_flight = 0
        self.ready = False
        self.not_ready_reason = "warming up"
        self.batcher = Batcher(self.run_batch, options.max_batch_tokens, options.max_batch_size,
                               options.batch_window_ms / 1000.0, telemetry)

    # ---------------------------------------------------------------- the model
    def run_batch(self, features: list[dict]) -> list:
        """Outputs of one batch of features from any requests: run_model, with the batch as one batch."""
        from electra.finetuning.finetune import run_model
        from electra.data.tokenizer import special_token_ids

        m = self.model
        pad = getattr(m, "_pad", None)
        if pad is None:
            pad = special_token_ids(m.tokenizer)["pad"]
        autocast = getattr(m, "_autocast", None) or contextlib.nullcontext
        return run_model(m.model, self.task, features, pad, len(features), getattr(m, "device", "cpu"), autocast)

    def prepare(self, inputs: list, truncate: bool):
        """(examples, features, indices of truncated inputs) of one request; ApiError 422 for a wrong input."""
        try:
            examples = self.model.examples(inputs)
            features = self.task.featurize(examples, self.model.tokenizer, self.max_len, training=False)
        except UserError as e:
            raise ApiError(422, str(e)) from None
        truncated = self.truncated(examples, features)
        if truncated and not truncate:
            i = truncated[0]
            what = (f"its question is longer than max_query_length {self.max_query_length()} tokens"
                    if self.task.name == "qa" else f"it is longer than the model's max_seq_length {self.max_len} "
                                                   f"tokens")
            raise ApiError(422, f"inputs[{i}]: {what} and \"truncate\" is false; send it shorter, or with "
                                f"\"truncate\": true (the default)")
        return examples, features, truncated

    def max_query_length(self) -> int:
        return int((getattr(self.task, "qa_options", None) or {}).get("max_query_length", 64))

    def truncated(self, examples, features) -> list[int]:
        """Which inputs lost tokens: a text (pair) or sentence longer than max_seq_length tokens with [CLS] and
        [SEP]s, or a QA question past max_query_length. A long QA context is not truncated: it is read in
        overlapping windows (doc_stride), as `electra predict` does."""
        name = self.task.name
        out = []
        if name == "qa":
            limit = self.max_query_length()
            for i, e in enumerate(examples):
                if len(self._full.encode(e.question, add_special_tokens=False).ids) > limit:
                    out.append(i)
            return out
        for f in features:
            if len(f["input_ids"]) < self.max_len:
                continue
            i = f["example"]
            e = examples[i]
            if name == "tagging":
                words = list(e.words) if hasattr(e, "words") else e.text.split()
                n = len(self._full.encode(words, is_pretokenized=True).ids)
            else:
                n = len(self._full.encode(e.text, e.text_pair).ids if e.text_pair is not None
                        else self._full.encode(e.text).ids)
            if n > self.max_len:
                out.append(i)
        return out

    def predict_now(self, inputs: list, timeout: float) -> list[dict]:
        """The rows of ``inputs`` through the batcher, from a thread (the warm-up)."""
        examples, features, truncated = self.prepare(inputs, True)
        outputs = self.batcher.submit(features).future.result(timeout)
        return self.rows(examples, features, outputs, truncated)

    def rows(self, examples, features, outputs, truncated: list[int]) -> list[dict]:
        rows = self.task.predictions(examples, features, outputs)
        for i in truncated:
            rows[i]["truncated"] = True
        return rows

    def warm_up(self) -> None:
        try:
            self.predict_now([WARM_UP[self.task.name]], 300.0)
        except BaseException as e:  # noqa: BLE001 - reported by /ready and the log
            self.not_ready_reason = f"warm-up failed: {type(e).__name__}: {e}"
            log.error("%s", " ".join(self.not_ready_reason.split()))
            return
        self.ready = True
        self.telemetry.ready.set(1)
        log.info("ready: %s model (%s), task %s, max_seq_length %d", self.backend, Path(self.model.folder).name
                 if hasattr(self.model, "folder") else "in memory", self.task.name, self.max_len)

    # ---------------------------------------------------------------- a request
    async def read_body(self, request: Request) -> bytes:
        limit = self.options.payload_limit
        declared = request.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise ApiError(413, f"the body has {int(declared)} bytes, past the payload limit of {limit} bytes; "
                                f"send fewer or shorter inputs per request")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the body is past the payload limit of {limit} bytes; send fewer or shorter "
                                    f"inputs per request")
            chunks.append(chunk)
        return b"".join(chunks)

    def parse(self, body: bytes) -> tuple[list, bool]:
        """The request's inputs and truncate flag; ApiError 400/413/422 for anything else."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ApiError(400, f"the body is not UTF-8 (byte {e.start}); send JSON encoded as UTF-8") from None
        try:
            payload = json.loads(text)
        except ValueError as e:
            raise ApiError(422, f"the body is not valid JSON ({e}); send {{\"inputs\": [ITEM, ...]}}") from None
        if not isinstance(payload, dict):
            raise ApiError(422, f"the body is a JSON {type(payload).__name__}, not an object; send "
                                f"{{\"inputs\": [ITEM, ...]}}")
        extra = sorted(set(payload) - {"inputs", "truncate"})
        if extra:
            raise ApiError(422, f"unknown key {extra[0]!r}; the body has \"inputs\" and optionally \"truncate\"")
        if "inputs" not in payload:
            raise ApiError(422, "missing key \"inputs\"; send {\"inputs\": [ITEM, ...]}")
        inputs = payload["inputs"]
        if not isinstance(inputs, list):
            raise ApiError(422, f"\"inputs\" is a JSON {type(inputs).__name__}, not a list of ITEMs")
        if not inputs:
            raise ApiError(422, "\"inputs\" is empty; send at least one ITEM")
        if len(inputs) > self.options.max_client_batch:
            raise ApiError(413, f"{len(inputs)} inputs, past the limit of {self.options.max_client_batch} per "
                                f"request (max_client_batch); split them over several requests")
        truncate = payload.get("truncate", True)
        if not isinstance(truncate, bool):
            raise ApiError(422, f"\"truncate\" is true or false, not {json.dumps(truncate)[:40]}")
        for i, item in enumerate(inputs):
            problem = _blank(item)
            if problem:
                raise ApiError(422, f"inputs[{i}]: {problem}")
        if self.task.name == "qa":
            ids = [str(item.get("id", i)) for i, item in enumerate(inputs) if isinstance(item, dict)]
            if len(set(ids)) != len(ids):
                raise ApiError(422, "two inputs have the same \"id\"; give each question its own id")
        return inputs, truncate

    async def predict(self, request: Request) -> dict:
        started = time.perf_counter()
        body, inputs = b"", None
        try:
            body = await self.read_body(request)
            inputs, truncate = self.parse(body)
            # A small request is featurised on the event loop (tens of microseconds; a thread hop costs more);
            # a large one in a thread, so that it does not hold up the others.
            examples, features, truncated = self.prepare(inputs, truncate) if len(body) <= SMALL_BODY \
                else await run_in_threadpool(self.prepare, inputs, truncate)
        except ApiError as e:
            self.log_request(body, inputs, e.status, started, error=e.message)
            raise
        job = self.batcher.submit(features)
        try:
            outputs = await asyncio.wrap_future(job.future)
        finally:
            if not job.future.done():
                job.cancel()
        rows = self.rows(examples, features, outputs, truncated) if len(body) <= SMALL_BODY \
            else await run_in_threadpool(self.rows, examples, features, outputs, truncated)
        self.telemetry.inputs.inc(len(rows))
        if truncated:
            self.telemetry.truncated.inc(len(truncated))
        self.log_request(body, inputs, 200, started, len(features))
        return {"predictions": rows}

    def log_request(self, body: bytes, inputs: list | None, status: int, started: float, features: int = 0,
                    error: str = "") -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        digest = hashlib.sha256(body).hexdigest()[:12]
        ms = (time.perf_counter() - started) * 1000
        parts = [f"predict status={status}", f"bytes={len(body)}", f"sha256={digest}", f"ms={ms:.1f}"]
        if inputs is not None:
            parts.insert(1, f"inputs={len(inputs)} features={features} chars={[_chars(x) for x in inputs][:32]}")
        if self.options.log_inputs:
            parts.append(f"body={body[:2000].decode('utf-8', 'replace')!r}")
        if error:
            parts.append(f"error={error!r}")
        log.info(" ".join(parts))


def _blank(item: Any) -> str:
    """Why an ITEM holds an empty text ("" if it does not)."""
    if isinstance(item, str):
        return "an empty text" if not item.strip() else ""
    if isinstance(item, list):
        if any(isinstance(x, str) and not x.strip() for x in item):
            return "an empty text (or word) in the list"
    if isinstance(item, dict):
        for key in ("question", "context"):
            if isinstance(item.get(key), str) and not item[key].strip():
                return f"an empty {key!r}"
    return ""


def _chars(item: Any) -> Any:
    """An ITEM's length in characters (per text for a pair or a list of words): what the log shows of it."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, list):
        return [len(x) if isinstance(x, str) else None for x in item[:64]]
    if isinstance(item, dict):
        return {k: len(v) for k, v in item.items() if isinstance(v, str) and k in ("question", "context")}
    return None


class Gate:
    """ASGI middleware: the API key (every route but /health) and the request metrics."""

    def __init__(self, app, service: Service):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            key = self.service.api_key
            if key is not None and scope["path"] != "/health" and not _authorized(scope, key):
                await error_response(401, "missing or wrong API key; send the header 'Authorization: Bearer KEY'",
                                     {"WWW-Authenticate": "Bearer"})(scope, receive, sending)
                return
            await self.app(scope, receive, sending)
        finally:
            self.service.telemetry.request(scope["path"], status[0], time.perf_counter() - started)


def _authorized(scope, key: str) -> bool:
    given = b""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            given = value
            break
    scheme, _, token = given.partition(b" ")
    ok_scheme = scheme.lower() == b"bearer"
    return hmac.compare_digest(token.strip(), key.encode("utf-8")) and ok_scheme


def create_app(model: Any, options: ServeOptions | Mapping[str, Any] | None = None, **more: Any) -> FastAPI:
    """The service's FastAPI app for ``model`` (a fine-tuned folder, an export-onnx folder or electra.load's
    result). ``options``: a ServeOptions or a dict of its fields (keywords too). The batcher starts, and the
    model is warmed up, when the app starts (its lifespan); /ready answers 503 until then."""
    opts = ServeOptions.of(options, **more)
    model = load_model(model)
    telemetry = Telemetry()
    service = Service(model, opts, telemetry)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        threading.Thread(target=service.warm_up, name="electra-warm-up", daemon=True).start()
        try:
            yield
        finally:
            service.ready = False
            telemetry.ready.set(0)
            await run_in_threadpool(service.batcher.stop, opts.request_timeout + 5)
            telemetry.close()

    app = FastAPI(title="electra serve", version=__version__, lifespan=lifespan,
                  description="Predictions of a fine-tuned ELECTRA model, batched dynamically (docs/serve.md).")
    app.state.service = service

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail),
                              getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.error("internal error on %s: %s: %s", request.url.path, type(exc).__name__, " ".join(str(exc).split()))
        return error_response(500, f"internal error ({type(exc).__name__}); see the server's log")

    @app.post("/v1/predict", openapi_extra=PREDICT_SCHEMA, summary="Predict for a batch of inputs")
    async def predict(request: Request):
        """`{"inputs": [ITEM, ...], "truncate": true}` -> `{"predictions": [ROW, ...]}`, the rows of
        `electra.load(MODEL).predict(inputs)`."""
        if not service.ready:
            raise ApiError(503, f"not ready ({service.not_ready_reason}); retry when GET /ready answers 200",
                           {"Retry-After": "1"})
        if service.in_flight >= opts.max_concurrent:
            log.info("predict status=429 in_flight=%d", service.in_flight)
            raise ApiError(429, f"{opts.max_concurrent} requests are already queued or running (max_concurrent); "
                                f"retry later", {"Retry-After": "1"})
        service.in_flight += 1
        telemetry.in_flight.set(service.in_flight)
        started = time.perf_counter()
        try:
            return JSONResponse(await asyncio.wait_for(service.predict(request), opts.request_timeout))
        except TimeoutError:
            service.log_request(b"", None, 504, started, error="timeout")
            raise ApiError(504, f"no answer within {opts.request_timeout:g} s (request_timeout); retry, or send "
                                f"fewer inputs per request") from None
        finally:
            service.in_flight -= 1
            telemetry.in_flight.set(service.in_flight)

    @app.get("/health", summary="Liveness: 200 while the process serves")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: 200 once the model is loaded and warmed up, else 503")
    async def ready():
        if not service.ready:
            return error_response(503, f"not ready: {service.not_ready_reason}", {"Retry-After": "1"})
        return {"status": "ready", "pid": os.getpid()}  # with --workers N: which worker is ready

    @app.get("/info", summary="The model and the service's limits")
    async def info():
        task = service.task
        return {"task": task.name, "labels": list(task.labels), "max_seq_length": service.max_len,
                "backend": service.backend, "version": __version__,
                "model": Path(model.folder).name if getattr(model, "folder", None) else None,
                "qa_options": dict(getattr(task, "qa_options", None) or {}) if task.name == "qa" else None,
                "limits": opts.limits(), "workers": opts.workers, "pid": os.getpid()}

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def metrics():
        telemetry.queue.set(service.batcher.queued())
        return Response(telemetry.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(Gate, service=service)
    return app


def app_from_env() -> FastAPI:
    """The app factory of `--workers N` (uvicorn imports it in every worker): model and options from the
    ELECTRA_SERVE_OPTIONS environment variable (JSON)."""
    raw = os.environ.get(ENV_VAR)
    if not raw:
        raise UserError(f"{ENV_VAR} is not set; start the workers with electra serve")
    log_setup()  # a spawned worker starts without the parent's log handler
    values = json.loads(raw)
    model = values.pop("model")
    return create_app(model, values)
