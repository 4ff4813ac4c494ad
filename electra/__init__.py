"""electra: pre-train, fine-tune and use ELECTRA models (Clark et al., ICLR 2020).

From Python (electra/api.py): ``electra.train_tokenizer``, ``electra.build_data``, ``electra.pretrain``,
``electra.export``, ``electra.finetune``, ``electra.export_onnx``, ``electra.load`` and ``electra.serve``, the
command's verbs as functions; they raise
``electra.UserError`` where the command prints its one-line error.
"""

from electra.errors import Stopped, UserError
from electra.version import __version__

_API = ("train_tokenizer", "build_data", "pretrain", "export", "finetune", "export_onnx", "load", "serve",
        "FineTunedModel", "Discriminator")
__all__ = [*_API, "UserError", "Stopped", "__version__"]


def __getattr__(name: str):
    # Loaded on first use: `import electra` (and so every `electra` command) stays free of torch until needed.
    if name == "serve":  # the service stands on the API (it serves what ``load`` gives), not inside it
        from electra.serving import serve

        return serve
    if name in _API:
        from electra import api

        return getattr(api, name)
    raise AttributeError(f"module 'electra' has no attribute {name!r}")
