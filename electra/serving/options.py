"""The options of `electra serve`, checked once, with one-line ``UserError`` messages."""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from electra.errors import UserError

ENV_VAR = "ELECTRA_SERVE_OPTIONS"  # JSON {"model": FOLDER, OPTION: VALUE, ...} for the --workers app factory


@dataclass
class ServeOptions:
    """Every option of `electra serve` (the command's flags, dashes as underscores; ``timeout`` is
    ``request_timeout``). Defaults follow text-embeddings-inference where it has the same option."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key_file: str | None = None
    max_batch_tokens: int = 16384   # padded tokens of one model batch: batch size x its longest feature
    max_batch_size: int = 32        # features (texts, QA windows) in one model batch
    max_client_batch: int = 32      # inputs in one request
    max_concurrent: int = 512       # requests accepted and not yet answered; past it: 429
    payload_limit: int = 2_000_000  # bytes of one request body; past it: 413
    request_timeout: float = 10.0   # seconds from acceptance to answer; past it: 504
    batch_window_ms: float = 0.0    # wait this long for more requests when a batch is not full (0: never)
    workers: int = 1                # processes, each with its own copy of the model
    log_inputs: bool = False        # log request texts (otherwise only their lengths and a hash)

    @classmethod
    def of(cls, options: "ServeOptions | Mapping[str, Any] | None" = None, **more: Any) -> "ServeOptions":
        """Options from a ServeOptions, a dict and/or keywords (later ones win), checked."""
        values: dict[str, Any] = {}
        if isinstance(options, ServeOptions):
            values.update(dataclasses.asdict(options))
        elif options is not None:
            if not isinstance(options, Mapping):
                raise UserError(f"serve options: a dict of option values, not {type(options).__name__}")
            values.update(options)
        values.update(more)
        if "timeout" in values:  # the command's --timeout
            values["request_timeout"] = values.pop("timeout")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"serve: unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        opts = cls(**values)
        opts.check()
        return opts

    def check(self) -> None:
        def whole(name: str, low: int, high: int | None = None) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low or (high is not None and v > high):
                bound = f"between {low} and {high}" if high is not None else f">= {low}"
                raise UserError(f"{name}: a whole number {bound}, got {v!r}")

        def number(name: str, low: float, high: float, low_open: bool) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or v > high or (v <= low if low_open else v < low):
                raise UserError(f"{name}: a number {'>' if low_open else '>='} {low:g} and <= {high:g}, got {v!r}")

        if not isinstance(self.host, str) or not self.host.strip():
            raise UserError(f"host: an address to listen on (127.0.0.1, 0.0.0.0, ...), got {self.host!r}")
        whole("port", 1, 65535)
        whole("max_batch_tokens", 1)
        whole("max_batch_size", 1)
        whole("max_client_batch", 1)
        whole("max_concurrent", 1)
        whole("payload_limit", 1)
        whole("workers", 1, 64)
        number("request_timeout", 0, 3600, True)
        number("batch_window_ms", 0, 1000, False)
        if not isinstance(self.log_inputs, bool):
            raise UserError(f"log_inputs: true or false, got {self.log_inputs!r}")
        if self.api_key_file is not None and not isinstance(self.api_key_file, (str, Path)):
            raise UserError(f"api_key_file: a file path, got {type(self.api_key_file).__name__}")
        if self.api_key_file is not None:
            self.api_key_file = str(self.api_key_file)

    def limits(self) -> dict[str, Any]:
        """What a client may send and how the service batches (GET /info)."""
        return {k: getattr(self, k) for k in ("max_batch_tokens", "max_batch_size", "max_client_batch",
                                              "max_concurrent", "payload_limit", "request_timeout",
                                              "batch_window_ms")}


def read_api_key(path: str | Path) -> str:
    """The key: the file's first line, stripped. A missing, unreadable or empty file is a UserError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such API key file; write the key on its first line") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the API key file ({getattr(e, 'strerror', None) or e})") from None
    lines = text.splitlines()
    key = lines[0].strip() if lines else ""
    if not key:
        raise UserError(f"{path}: the API key file's first line is empty; write the key on it")
    return key


def add_arguments(sp: argparse.ArgumentParser) -> None:
    """The options of `electra serve` (electra/cli.py adds them to its parser); ``options`` reads them back."""
    sp.add_argument("model", metavar="MODEL", help="a fine-tuned folder (`electra finetune --out`, or its model/) "
                                                   "or an `electra export-onnx` folder")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--api-key-file", default=None, metavar="FILE",
                    help="require 'Authorization: Bearer KEY' on every route but /health; KEY: the file's first line")
    sp.add_argument("--max-batch-tokens", type=int, default=16384, metavar="N",
                    help="padded tokens in one model batch (batch size x longest input)")
    sp.add_argument("--max-batch-size", type=int, default=32, metavar="N", help="inputs in one model batch")
    sp.add_argument("--max-client-batch", type=int, default=32, metavar="N",
                    help="inputs in one request; more: 413")
    sp.add_argument("--max-concurrent", type=int, default=512, metavar="N",
                    help="requests queued or running; more: 429 with Retry-After")
    sp.add_argument("--payload-limit", type=int, default=2_000_000, metavar="BYTES",
                    help="bytes in one request body; more: 413")
    sp.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                    help="answer a request within this long, else 504")
    sp.add_argument("--batch-window-ms", type=float, default=0.0, metavar="MS",
                    help="wait up to this long for a fuller batch (default 0: never wait)")
    sp.add_argument("--workers", type=int, default=1, metavar="N", help="processes, each with its own model")
    sp.add_argument("--log-inputs", action="store_true",
                    help="log request texts (default: only their lengths and a SHA-256 hash)")


def options_from(args) -> dict:
    """``serve``'s keyword arguments from parsed `electra serve` options."""
    return dict(host=args.host, port=args.port, api_key_file=args.api_key_file,
                max_batch_tokens=args.max_batch_tokens, max_batch_size=args.max_batch_size,
                max_client_batch=args.max_client_batch, max_concurrent=args.max_concurrent,
                payload_limit=args.payload_limit, request_timeout=args.timeout,
                batch_window_ms=args.batch_window_ms, workers=args.workers, log_inputs=args.log_inputs)
