"""Prometheus metrics of one service, in the app's own registry (several apps in one process stay apart).

With ``--workers N`` every worker is its own process: prometheus_client's multiprocess mode (its
``PROMETHEUS_MULTIPROC_DIR``, set by the launcher before the workers start) keeps each worker's values in files
there, and /metrics, whichever worker answers it, adds them up: counters and histograms summed, the in-flight
and queue gauges summed over the live workers, ``electra_ready`` their minimum (1 once every worker is ready).
"""

from __future__ import annotations

import logging
import os
import sys

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the /metrics route)

ROUTES = ("/v1/predict", "/health", "/ready", "/info", "/metrics", "/docs", "/openapi.json", "/docs/oauth2-redirect",
          "/redoc")
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it when it is imported
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Telemetry:
    """The service's metrics (docs/serve.md lists them)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("electra_requests", "HTTP requests answered, by route and status", ["route", "status"],
                                registry=r)
        self.latency = Histogram("electra_request_duration_seconds", "time from a request's arrival to its answer, "
                                 "by route and status", ["route", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("electra_requests_in_flight", "prediction requests accepted and not yet answered "
                               "(429 past --max-concurrent)", multiprocess_mode="livesum", registry=r)
        self.queue = Gauge("electra_queue_size", "features (texts, QA windows) waiting for a model batch",
                           multiprocess_mode="livesum", registry=r)
        self.batch_size = Histogram("electra_batch_size", "features per model batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.batch_tokens = Histogram("electra_batch_tokens", "padded tokens per model batch (size x longest)",
                                      buckets=(16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536), registry=r)
        self.batch_seconds = Histogram("electra_batch_duration_seconds", "model time per batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("electra_tokens", "tokens run through the model, padding excluded; tokens per second "
                              "is rate(electra_tokens_total[1m])", registry=r)
        self.padded_tokens = Counter("electra_padded_tokens", "tokens run through the model, padding included",
                                     registry=r)
        self.inputs = Counter("electra_inputs", "inputs (request items) answered", registry=r)
        self.truncated = Counter("electra_truncated_inputs", "inputs truncated to the model's max length", registry=r)
        self.ready = Gauge("electra_ready", "1 once the model is loaded and warmed up", multiprocess_mode="livemin",
                           registry=r)

    def request(self, route: str, status: int, seconds: float) -> None:
        route = route if route in ROUTES else "other"  # bounded label values: unknown paths share one
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route, str(status)).observe(seconds)

    def batch(self, size: int, padded: int, tokens: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_tokens.observe(padded)
        self.tokens.inc(tokens)
        self.padded_tokens.inc(padded)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        if not os.environ.get(MULTIPROCESS_DIR):
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker)
        return generate_latest(every_worker)

    def close(self) -> None:
        """This process stops serving: its live gauges leave the sum (multiprocess mode)."""
        if os.environ.get(MULTIPROCESS_DIR):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


def log_setup() -> None:
    """The service's log lines (``electra.serve``) to stderr, once per process (a spawned worker too)."""
    logger = logging.getLogger("electra.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s electra.serve: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
