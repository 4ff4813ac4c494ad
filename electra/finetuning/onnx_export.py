"""``electra export-onnx``: a fine-tuned model exported for ONNX Runtime, optionally quantised to int8 (the folder
layout and the backend that runs it: electra/interop/onnx_model.py; docs/serve.md, "ONNX").

The export is checked before it is kept: ONNX Runtime's fp32 outputs must match PyTorch's on a sample of inputs,
in padded batches and one at a time, within ``PARITY_TOLERANCE``; else nothing is written. int8 is never assumed
to be as accurate (it has cost ELECTRA models several points): its difference from PyTorch is recorded, and with
``--dev`` both models are scored and a loss of more than ``INT8_WARN_POINTS`` is reported.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from electra.data.tokenizer import special_token_ids
from electra.errors import UserError
from electra.finetuning.finetune import evaluate
from electra.finetuning.predict import load_finetuned, resolve_finetuned
from electra.interop.onnx_model import INPUT_NAMES, INT8_FILE, ONNX_FILE, ONNX_META, OnnxModel, need_onnx, output_names
from electra.model import explicit_attention
from electra.runtime.files import (AtomicDir, claim_output_folder, copy_file, mark_owned, write_bytes, write_json,
                                   write_text)

PARITY_TOLERANCE = 1e-4    # fp32: the largest |ONNX Runtime - PyTorch| logit difference an export may have
INT8_WARN_POINTS = 1.0     # int8 losing more than this (in points of the dev metric) is reported
PARITY_SAMPLE = 64         # inputs the parity check runs (from --dev when given)
_FOLDER_FILES = ("task.json", "config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
                 "special_tokens_map.json")


def _sample_features(task, tokenizer, max_len: int, dev: Path | None, seed: int = 0) -> tuple[list, list, str]:
    """(examples, features, what the parity sample is): ``dev``'s, all of them (scored with --dev; the check takes
    the first ``PARITY_SAMPLE``), or random token sequences of varied lengths (any non-special id can appear)."""
    if dev is not None:
        examples = task.read_eval(Path(dev))
        features = task.featurize(examples, tokenizer, max_len, training=False)
        return examples, features, f"the first {min(len(features), PARITY_SAMPLE)} inputs of {dev}"
    rng = np.random.default_rng(seed)
    vocab = tokenizer.get_vocab_size()
    lengths = np.linspace(3, max_len, PARITY_SAMPLE).astype(int)
    features = [{"input_ids": [2, *rng.integers(5, vocab, n - 2).tolist(), 3], "token_type_ids": [0] * n,
                 "example": i} for i, n in enumerate(lengths)]
    return [], features, f"{PARITY_SAMPLE} random token sequences of 3 to {max_len} tokens"


def _batches(features: list[dict], pad_id: int, batch_size: int):
    """(input_ids, attention_mask, token_type_ids) int64 tensors of ``features`` in batches, padded to the
    longest of each batch (batches mix lengths on purpose: padding must not change a result)."""
    for start in range(0, len(features), batch_size):
        chunk = features[start:start + batch_size]
        longest = max(len(f["input_ids"]) for f in chunk)
        ids = torch.full((len(chunk), longest), pad_id, dtype=torch.int64)
        mask = torch.zeros_like(ids)
        types = torch.zeros_like(ids)
        for i, f in enumerate(chunk):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            types[i, :n] = torch.tensor(f["token_type_ids"])
            mask[i, :n] = 1
        yield ids, mask, types


def max_difference(model, onnx_model: OnnxModel, features: list[dict], pad_id: int) -> dict[str, float]:
    """The largest |ONNX Runtime - PyTorch| output over ``features``, padded in batches of 8 and one at a time
    (unpadded); positions that are padding are left out (they mean nothing in either)."""
    result = {}
    for name, size in (("padded", 8), ("unpadded", 1)):
        worst = 0.0
        for ids, mask, types in _batches(features, pad_id, size):
            with torch.no_grad():
                ref = model(ids, mask, types)
            got = onnx_model(ids, mask, types)
            ref, got = (ref, got) if isinstance(ref, tuple) else ((ref,), (got,))
            for r, g in zip(ref, got):
                diff = (r.float() - g.float()).abs()
                if diff.dim() >= 2 and diff.shape[:2] == mask.shape:  # per-token outputs: real tokens only
                    diff = diff[mask.bool()]
                worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
        result[name] = worst
    return result


def _export_graph(model, task_name: str, max_len: int):
    """torch.onnx.export with the dynamo exporter: dynamic batch and sequence axes. The sample has two rows and
    is not at either bound (the exporter refuses a dynamic dimension of size 1 in its sample). Returns the
    graph (an onnx ModelProto)."""
    n = min(16, max_len)
    ids = torch.full((2, n), 5, dtype=torch.int64)
    mask = torch.ones_like(ids)
    mask[1, n // 2:] = 0
    types = torch.zeros_like(ids)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=max_len)
    shapes = {name: {0: batch, 1: sequence} for name in INPUT_NAMES}
    try:
        with _quiet(), explicit_attention(model):
            program = torch.onnx.export(model, (ids, mask, types), dynamo=True, input_names=list(INPUT_NAMES),
                                        output_names=list(output_names(task_name)), dynamic_shapes=shapes,
                                        verbose=False)
    except ImportError as e:  # onnxscript (the dynamo exporter's) missing
        raise UserError(f"the ONNX exporter needs {e.name or 'onnxscript'}: pip install 'electra[onnx]'") from None
    proto = program.model_proto
    for node in proto.graph.node:  # the exporter's per-node provenance (Python stack traces, FX names): not needed
        del node.metadata_props[:]
    _split_mask_unsqueeze(proto)
    return proto


def _opset(proto) -> int | None:
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)


def _split_mask_unsqueeze(proto) -> None:
    """The exporter's optimiser merges ``additive_mask``'s two unsqueezes of ``attention_mask`` into one node with
    axes [1, 2]; ONNX Runtime's attention fusion matches two. Split it back (same result)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    initializers = {i.name: i for i in graph.initializer}  # (read only where needed: the weights are in here)
    nodes = []
    for node in graph.node:
        if node.op_type == "Unsqueeze" and node.input[0] == INPUT_NAMES[1] and len(node.input) == 2 \
                and node.input[1] in initializers \
                and numpy_helper.to_array(initializers[node.input[1]]).tolist() == [1, 2]:
            first, second = f"{node.name}_axis1", f"{node.name}_axis2"
            graph.initializer.extend([helper.make_tensor(first, TensorProto.INT64, [1], [1]),
                                      helper.make_tensor(second, TensorProto.INT64, [1], [2])])
            nodes += [helper.make_node("Unsqueeze", [node.input[0], first], [f"{node.name}_mid"], first),
                      helper.make_node("Unsqueeze", [f"{node.name}_mid", second], list(node.output), second)]
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _fuse_for_onnxruntime(proto, config):
    """ONNX Runtime's transformer optimizer on the exported graph: BERT's attention (with the raw 2-D mask, so any
    padding works), bias + GELU and residual + LayerNorm each become one of its fused operators (the
    com.microsoft domain; the graph then runs on ONNX Runtime only). Returns the fused graph and how many of each
    operator it made."""
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.attention_mask_format = AttentionMaskFormat.AttentionMask
    with _quiet():
        optimized = optimize_model(proto, model_type="bert", num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size, opt_level=0, optimization_options=options)
    return optimized.model, {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}


def _quantize(fp32: Path, int8: Path) -> None:
    """ONNX Runtime's dynamic quantisation: int8 weights (signed, per tensor; QInt8), activations quantised per
    batch at run time. ``reduce_range`` (7-bit weights) on CPUs without VNNI instructions, where 8-bit products
    can saturate (ONNX Runtime's advice)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # ONNX Runtime's advised pre-processing (graph optimisation and shape inference) first, into a sibling file.
    prepared = int8.with_name(f".{int8.name}.prepared")
    try:
        with _quiet():
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)  # (fails on SDPA graphs)
            quantize_dynamic(str(prepared), str(int8), weight_type=QuantType.QInt8, per_channel=False,
                             reduce_range=not _has_vnni())
    finally:
        prepared.unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet():
    """The exporter's and the quantiser's chatter (torchvision ops skipped, deprecations, advice) off stderr:
    the command says what it did in its own lines."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript", "")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux: take ONNX Runtime's default
    return "avx512_vnni" in flags or "avx_vnni" in flags


def _points(metrics: dict[str, float], primary: str) -> float:
    """The primary metric in points (a fraction ×100; SQuAD's F1 is already in points)."""
    value = float(metrics[primary])
    return value * 100 if abs(value) <= 1.0 and primary != "f1" else value


def export_onnx(model_path: str | Path, out: str | Path, int8: bool = False, dev: str | Path | None = None,
                overwrite: bool = False, report=print) -> dict[str, Any]:
    """Export a fine-tuned folder to ``out`` (see the module docstring); returns what onnx.json records.

    Refused (one line, nothing written) when the fp32 export differs from PyTorch by more than
    ``PARITY_TOLERANCE`` on the sample."""
    need_onnx()
    import onnxruntime

    source = resolve_finetuned(Path(model_path))
    out = Path(out)
    if out.resolve() == source.resolve() or out.resolve() in source.resolve().parents:
        raise UserError(f"{out}: holds the model being exported ({source}); choose another --out")
    claim_output_folder(out, "--out", overwrite, command="electra export-onnx")
    if dev is not None and not Path(dev).is_file():
        raise UserError(f"{dev}: no such file; give --dev a labelled file in the task's format")
    device = torch.device("cpu")
    task, model, tok, max_len = load_finetuned(source, device)
    if hasattr(model, "session"):
        raise UserError(f"{source}: is already an ONNX export; give the fine-tuned folder it came from")
    pad = special_token_ids(tok)["pad"]
    examples, features, sample_text = _sample_features(task, tok, max_len, Path(dev) if dev else None)
    sample = features[:PARITY_SAMPLE]
    record: dict[str, Any] = {"source": str(source), "task": task.name, "max_seq_length": max_len,
                              "opset": None, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                              "parity_sample": sample_text, "parity_tolerance": PARITY_TOLERANCE}
    with AtomicDir(out) as tmp:
        graph = _export_graph(model, task.name, max_len)
        record["opset"] = _opset(graph)
        graph, record["fused"] = _fuse_for_onnxruntime(graph, model.config)
        write_bytes(tmp / ONNX_FILE, graph.SerializeToString())
        fp32 = OnnxModel(tmp / ONNX_FILE, model.config, task.name)
        parity = max_difference(model, fp32, sample, pad)
        if max(parity.values()) > PARITY_TOLERANCE:
            raise UserError(f"{out}: refused: ONNX Runtime's outputs differ from PyTorch's by "
                            f"{max(parity.values()):.2e} (more than {PARITY_TOLERANCE:g}) on {sample_text}; "
                            f"nothing was written")
        files, sessions = {"fp32": ONNX_FILE}, {"fp32": fp32}
        record["parity"] = {"fp32": parity}
        if int8:
            _quantize(tmp / ONNX_FILE, tmp / INT8_FILE)
            files["int8"], sessions["int8"] = INT8_FILE, OnnxModel(tmp / INT8_FILE, model.config, task.name)
            record["parity"]["int8"] = max_difference(model, sessions["int8"], sample, pad)
            record["reduce_range"] = not _has_vnni()
        record["files"], record["default"] = files, ("int8" if int8 else "fp32")
        record["bytes"] = {"pytorch": (source / "model.safetensors").stat().st_size,
                           **{k: (tmp / v).stat().st_size for k, v in files.items()}}
        if dev is not None:
            scores = {variant: evaluate(session, task, examples, features, pad, 64, device, _no_autocast)[0]
                      for variant, session in sessions.items()}
            record["dev"] = {"file": str(dev), "primary_metric": task.primary_metric, **scores}
            if int8:
                lost = _points(scores["fp32"], task.primary_metric) - _points(scores["int8"], task.primary_metric)
                record["dev"]["int8_loss_points"] = round(lost, 3)
                if lost > INT8_WARN_POINTS:
                    print(f"warning: int8 loses {lost:.2f} points of dev {task.primary_metric} against fp32 "
                          f"({dev}); serve {ONNX_FILE} instead (set \"default\": \"fp32\" in {out / ONNX_META}) or "
                          f"keep the PyTorch model", file=sys.stderr)
        for name in _FOLDER_FILES:
            if (source / name).is_file():
                copy_file(source / name, tmp / name)
        write_json(tmp / ONNX_META, record)
        card = (source / "README.md").read_text(encoding="utf-8") if (source / "README.md").is_file() else ""
        write_text(tmp / "README.md", card + onnx_card_section(record))
        mark_owned(tmp, "electra export-onnx")
    return record


def _no_autocast():
    return contextlib.nullcontext()


def onnx_card_section(record: dict[str, Any]) -> str:
    """The model card's ONNX section: files, sizes, parity and dev scores (from onnx.json)."""
    mb = {k: f"{v / 1e6:.2f} MB" for k, v in record["bytes"].items()}
    lines = ["\n## ONNX Runtime\n",
             f"Exported with `electra export-onnx` (torch {record['torch']}, ONNX Runtime {record['onnxruntime']}, "
             f"opset {record['opset']}). `electra predict`, `electra evaluate`, `electra serve` and `electra.load` "
             f"run this folder on ONNX Runtime, with the {record['default']} model by default.\n",
             "| model | file | size | max \\|Δ logit\\| vs PyTorch (padded / one at a time) |",
             "|---|---|---|---|",
             f"| PyTorch fp32 | model.safetensors (source) | {mb['pytorch']} | |"]
    for variant, name in record["files"].items():
        p = record["parity"][variant]
        lines.append(f"| ONNX {variant} | {name} | {mb[variant]} | {p['padded']:.2e} / {p['unpadded']:.2e} |")
    lines.append(f"\nParity sample: {record['parity_sample']}.\n")
    if "dev" in record:
        dev, primary = record["dev"], record["dev"]["primary_metric"]
        scores = ", ".join(f"{variant} {dev[variant][primary]:.4f}" for variant in record["files"])
        lines.append(f"Dev {primary} on {dev['file']}: {scores}"
                     + (f" (int8 loses {dev['int8_loss_points']:.2f} points)" if "int8_loss_points" in dev else "")
                     + ".\n")
    return "\n".join(lines) + "\n"
