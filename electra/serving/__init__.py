"""`electra serve`: a fine-tuned model behind HTTP, with dynamic batching, limits, an API key and metrics.

``create_app(model, options)`` builds the FastAPI app; ``serve(model, **options)`` runs it on uvicorn.
docs/serve.md describes the routes, options, status codes and metrics.
"""

from electra.errors import UserError
from electra.serving.options import ServeOptions


def require_extra() -> None:
    """A one-line UserError naming the `serve` extra when fastapi, uvicorn or prometheus-client is missing."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"electra serve needs {', '.join(missing)}: pip install 'electra[serve]'")


def create_app(model, options=None, **more):
    """The FastAPI app (see electra.serving.server.create_app)."""
    require_extra()
    from electra.serving.server import create_app as make

    return make(model, options, **more)


def serve(model, **options) -> None:
    """`electra serve` from Python (``electra.serve``): ``model`` (a fine-tuned or export-onnx folder, or
    ``electra.load``'s result) over HTTP until SIGTERM or Ctrl-C. ``options`` are the command's, dashes as
    underscores (host, port, api_key_file, max_batch_tokens, max_batch_size, max_client_batch, max_concurrent,
    payload_limit, request_timeout (or timeout), batch_window_ms, workers, log_inputs); a wrong one, a bad folder
    or a port in use is a UserError. See electra.serving.launch.serve."""
    require_extra()
    from electra.serving.launch import serve as run

    if "timeout" in options:
        options["request_timeout"] = options.pop("timeout")
    run(model, **options)


__all__ = ["ServeOptions", "create_app", "serve"]
