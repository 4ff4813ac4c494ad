"""``serve(model, **options)``: the service on uvicorn, in this process or in ``workers`` processes."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from electra.errors import UserError
from electra.serving.options import ENV_VAR, ServeOptions, read_api_key
from electra.serving.telemetry import MULTIPROCESS_DIR, log_setup

log = logging.getLogger("electra.serve")


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) and listening; a UserError in one line when it cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"host {host!r}: not an address to listen on ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by every accepted connection. Without it a keep-alive response's body (written after its
        # headers) waits for the client's delayed ACK: +40 ms a request (measured; uvicorn's own sockets set it).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        hint = "another server is using it; stop it or give another --port" if e.errno == 98 else \
            "give another --host or --port"
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}; {hint}") from None
    sock.set_inheritable(True)
    return sock


class _Signals:
    """While uvicorn runs: SIGTERM and SIGINT only ask it to drain and stop (uvicorn re-raises the signal it
    caught once it has stopped; with the default handlers back, that would kill the process with it)."""

    def __enter__(self):
        self.saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.saved[sig] = signal.signal(sig, lambda *_: None)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False


def serve(model: Any, host: str = "127.0.0.1", port: int = 8000, api_key_file: str | Path | None = None,
          max_batch_tokens: int = 16384, max_batch_size: int = 32, max_client_batch: int = 32,
          max_concurrent: int = 512, payload_limit: int = 2_000_000, request_timeout: float = 10.0,
          batch_window_ms: float = 0.0, workers: int = 1, log_inputs: bool = False) -> None:
    """Serve ``model`` (a fine-tuned or export-onnx folder, or electra.load's result) over HTTP until SIGTERM or
    Ctrl-C; then stop accepting, answer the requests in flight and return. Every problem found before serving
    (options, the key file, the model folder, the port) is a one-line UserError. docs/serve.md has the rest."""
    import uvicorn

    from electra.serving.server import create_app, load_model

    opts = ServeOptions.of(dict(host=host, port=port, api_key_file=api_key_file, max_batch_tokens=max_batch_tokens,
                                max_batch_size=max_batch_size, max_client_batch=max_client_batch,
                                max_concurrent=max_concurrent, payload_limit=payload_limit,
                                request_timeout=request_timeout, batch_window_ms=batch_window_ms, workers=workers,
                                log_inputs=log_inputs))
    if opts.api_key_file:
        read_api_key(opts.api_key_file)  # a missing or empty key file stops us before anything loads
    log_setup()
    uv = dict(log_level="info", access_log=False, lifespan="on", server_header=False,
              timeout_graceful_shutdown=int(opts.request_timeout) + 5, timeout_keep_alive=5)
    loaded = load_model(model)
    if opts.workers == 1:
        sock = listening_socket(opts.host, opts.port)
        try:
            app = create_app(loaded, opts)
            log.info("serving %s on http://%s:%d (%s)", getattr(loaded, "folder", "model"), opts.host, opts.port,
                     "API key required" if opts.api_key_file else "no API key")
            server = uvicorn.Server(uvicorn.Config(app, **uv))
            with _Signals():
                server.run(sockets=[sock])
        finally:
            sock.close()
        if not server.started:
            raise UserError(f"the server on {opts.host}:{opts.port} did not start; see the log above")
        return
    # Several processes: each worker imports the app factory and loads the model itself.
    folder = getattr(loaded, "folder", None)
    if folder is None:
        raise UserError("workers > 1 needs the model as a folder (each worker loads it)")
    del loaded
    listening_socket(opts.host, opts.port).close()  # the port is free (uvicorn binds it again)
    os.environ[ENV_VAR] = json.dumps({"model": str(Path(folder).resolve()),
                                      **{k: v for k, v in dataclasses.asdict(opts).items()
                                         if k not in ("host", "port")}})
    log.info("serving %s on http://%s:%d with %d workers", folder, opts.host, opts.port, opts.workers)
    # The workers' metrics meet in a fresh folder (electra/serving/telemetry.py), removed when they have stopped.
    with tempfile.TemporaryDirectory(prefix="electra-serve-metrics-") as metrics_dir, _Signals():
        os.environ[MULTIPROCESS_DIR] = metrics_dir
        try:
            uvicorn.run("electra.serving.server:app_from_env", factory=True, host=opts.host, port=opts.port,
                        workers=opts.workers, **uv)
        finally:
            os.environ.pop(MULTIPROCESS_DIR, None)
