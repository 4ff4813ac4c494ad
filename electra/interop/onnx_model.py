"""ONNX models (from ``electra export-onnx``) run on ONNX Runtime wherever a fine-tuned folder is used: ``OnnxModel``
stands where the PyTorch model stands (docs/serve.md, "ONNX").

An export folder::

    DIR/model.onnx         fp32 graph; inputs input_ids, attention_mask, token_type_ids (batch, sequence), int64;
                           outputs logits (classification (B, C), tagging (B, T, C)) or start_logits, end_logits (QA)
    DIR/model.int8.onnx    with --int8: ONNX Runtime's dynamic quantisation (int8 weights, activations quantised
                           at run time); the folder's default model when present
    DIR/onnx.json          which file is the default, parity and size figures, dev scores, versions
    DIR/task.json, config.json, tokenizer files, README.md (the fine-tuned card plus an ONNX section)

The export itself is electra/finetuning/onnx_export.py.
"""

from __future__ import annotations

from pathlib import Path

import torch

from electra.errors import UserError
from electra.runtime.files import read_json_object

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
ONNX_META = "onnx.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def need_onnx():
    try:
        import onnxruntime  # noqa: F401
        import onnx  # noqa: F401
    except ImportError:
        raise UserError("ONNX export and ONNX models need the onnx extra: pip install 'electra[onnx]'") from None


def is_onnx_folder(folder: Path) -> bool:
    return (Path(folder) / ONNX_META).is_file()


def output_names(task_name: str) -> tuple[str, ...]:
    return ("start_logits", "end_logits") if task_name == "qa" else ("logits",)


class OnnxModel:
    """An ONNX Runtime session that stands where the PyTorch model stands (``run_model`` calls it with
    (input_ids, attention_mask, token_type_ids) tensors and gets logits back as tensors: a tuple for QA)."""

    def __init__(self, path: Path, config, task_name: str):
        need_onnx()
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own Fail / InvalidProtobuf / NoSuchFile ...: a bad or missing file
            if not type(e).__module__.startswith("onnxruntime"):
                raise
            raise UserError(f"{path}: not a model ONNX Runtime can load ({' '.join(str(e).split())[:160]}); "
                            f"export it again with `electra export-onnx`") from None
        self.path, self.config, self.outputs = Path(path), config, output_names(task_name)

    def eval(self) -> "OnnxModel":
        return self

    def to(self, device) -> "OnnxModel":
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 token_type_ids: torch.Tensor | None = None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        feed = {name: t.detach().cpu().to(torch.int64).numpy()
                for name, t in zip(INPUT_NAMES, (input_ids, attention_mask, token_type_ids))}
        out = [torch.from_numpy(o) for o in self.session.run(list(self.outputs), feed)]
        return tuple(out) if len(out) > 1 else out[0]


def load_onnx_model(folder: Path, config, task_name: str, variant: str | None = None) -> OnnxModel:
    """The default model of an export folder (int8 when it has one), or ``variant`` ("fp32" / "int8"); its
    ``backend`` names it ("onnx-fp32" / "onnx-int8")."""
    meta = read_json_object(Path(folder) / ONNX_META, "a JSON object (the ONNX export's record)")
    files = meta.get("files")
    variant = variant or meta.get("default")
    if not isinstance(files, dict) or variant not in files or not isinstance(files[variant], str) \
            or Path(files[variant]).name != files[variant]:
        raise UserError(f"{Path(folder) / ONNX_META}: names no {variant!r} model file; export it again with "
                        f"`electra export-onnx`")
    path = Path(folder) / files[variant]
    if not path.is_file():
        raise UserError(f"{path}: missing; the folder is damaged: export it again with `electra export-onnx`")
    model = OnnxModel(path, config, task_name)
    model.backend = f"onnx-{variant}"
    return model
