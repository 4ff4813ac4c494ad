"""`electra evaluate` and `electra predict`: load a fine-tuned model folder and score or label a file.

A fine-tuned folder is checked as it is loaded (docs/reliability.md): task.json must be an object whose
fields have their types and agree with the weights (the label count with the classifier's shape),
model.safetensors must be readable, hold every tensor the head needs with the shape config.json implies, and
hold only finite numbers. Anything else is one line naming the file, never a traceback.

Outputs never land on an input (the data, or a file of the model folder), a folder, or a path under a file;
missing parent folders are made; files are written whole or not at all.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from electra.config import ModelConfig
from electra.data.tokenizer import load_tokenizer, special_token_ids
from electra.errors import UserError
from electra.finetuning.finetune import (TASK_FILE, check_vocabulary, evaluate, non_finite_tensor, report_warnings,
                                         run_model)
from electra.finetuning.tasks import TASKS, make_task, min_seq_length
from electra.runtime.device import autocast_for
from electra.runtime.distributed import resolve_device
from electra.interop.onnx_model import is_onnx_folder, load_onnx_model
from electra.runtime.files import (OWNER_MARKER, atomic_file, check_output_file, failure_reason, make_folder,
                                   read_json_object, refuse_input_as_output, write_json)

WEIGHTS_FILE = "model.safetensors"


def resolve_finetuned(path: Path) -> Path:
    """The folder holding a fine-tuned model: ``runs/t`` -> ``runs/t/model``; a seed's ``best/`` as it is."""
    path = Path(path)
    for folder in (path / "model", path):
        if (folder / TASK_FILE).is_file():
            return folder
    raise UserError(f"{path}: not a fine-tuned model (no {TASK_FILE}); give the --out folder of `electra finetune`")


def _damaged(path: Path, what: str) -> UserError:
    return UserError(f"{path}: {what}; the folder is damaged or mixes files of different models: copy it again "
                     f"whole, or fine-tune again")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_task_file(folder: Path) -> dict:
    """task.json of a fine-tuned folder, checked field by field (what `electra finetune` writes)."""
    path = folder / TASK_FILE
    meta = read_json_object(path, "a JSON object (the task the model was fine-tuned for)")
    name = meta.get("task")
    if name not in TASKS:
        raise _damaged(path, f'"task" is {json.dumps(name)[:40] if "task" in meta else "missing"}, not one of '
                             f'{", ".join(TASKS)}')
    labels = meta.get("labels")
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise _damaged(path, '"labels" is missing or not a list of label names')
    if len(set(labels)) != len(labels):
        raise _damaged(path, '"labels" names a label twice')
    regression = meta.get("is_regression", False)
    if not isinstance(regression, bool):
        raise _damaged(path, '"is_regression" is not true or false')
    if name == "tagging" and not labels:
        raise _damaged(path, '"labels" is empty: a tagger needs its tags')
    if name == "classification" and not regression and len(labels) < 2:
        raise _damaged(path, f'"labels" holds {len(labels)} label(s): a classifier needs at least 2')
    for key in ("options", "qa_options"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise _damaged(path, f'"{key}" is not an object')
    for key in ("fallback_tag", "version"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise _damaged(path, f'"{key}" is not a string')
    qa = meta.get("qa_options") or {}
    for key in ("doc_stride", "max_query_length", "n_best_size", "max_answer_length"):
        if key in qa and not (_is_int(qa[key]) and qa[key] >= 1):
            raise _damaged(path, f'"qa_options.{key}" is not a whole number >= 1')
    threshold = qa.get("null_score_diff_threshold", 0.0)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise _damaged(path, '"qa_options.null_score_diff_threshold" is not a finite number')
    length = meta.get("max_seq_length")
    need = min_seq_length(name, max_query_length=qa.get("max_query_length", 64))
    if not _is_int(length) or length < need:
        shown = json.dumps(length)[:20] if "max_seq_length" in meta else "missing"
        raise _damaged(path, f'"max_seq_length" is {shown}, not a whole number >= {need} (the least {name} needs)')
    return meta


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a model.safetensors; a missing, truncated or corrupt file is one line naming it."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; a fine-tuned folder needs its weights: copy it again whole") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({failure_reason(e)})") from None
    except SafetensorError as e:
        raise _damaged(path, f"unreadable weights ({' '.join(str(e).split())[:120]})") from None


def check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, meta: dict) -> None:
    """``state`` (read from ``path``) fits ``model`` exactly, names and shapes, and is finite; else one line
    naming the weights and the files that describe the model (which of them is wrong cannot be told)."""
    described = f"{path.parent / 'config.json'} and {path.parent / TASK_FILE}"
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise _damaged(path, f"the weights lack {missing[0]} (and {len(missing) - 1} more) of the {meta['task']} "
                             f"model that {described} describe")
    extra = [k for k in state if k not in own]
    if extra:
        raise _damaged(path, f"the weights hold {extra[0]} (and {len(extra) - 1} more), which the {meta['task']} "
                             f"model that {described} describe has not")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            labels = f" ({len(meta['labels'])} labels)" if meta["task"] != "qa" else ""
            raise _damaged(path, f"{k} has shape {tuple(state[k].shape)} but {described}{labels} imply "
                                 f"{tuple(v.shape)}: they do not belong together")
    bad = non_finite_tensor(state)
    if bad is not None:
        raise _damaged(path, f"{bad} holds NaN or infinite numbers (a diverged training run?)")


def load_finetuned(path: Path, device: torch.device):
    """(task, model, tokenizer, max_seq_length) of a fine-tuned model folder, every file checked."""
    folder = resolve_finetuned(path)
    meta = read_task_file(folder)
    cfg = ModelConfig.from_hf_dict(read_json_object(folder / "config.json", "a JSON object (the model's config)"),
                                   str(folder / "config.json"))
    if meta["max_seq_length"] > cfg.max_position_embeddings:
        raise _damaged(folder / TASK_FILE, f'"max_seq_length" {meta["max_seq_length"]} exceeds the model\'s '
                                           f"max_position_embeddings {cfg.max_position_embeddings} (config.json)")
    task = make_task(meta["task"], meta.get("options"), meta)
    task.qa_options = meta.get("qa_options") or {}
    tok = load_tokenizer(folder)
    check_vocabulary(tok, cfg, folder)
    if is_onnx_folder(folder):  # an `electra export-onnx` folder: the same task, run on ONNX Runtime
        model = load_onnx_model(folder, cfg, task.name)
        return task, model, tok, meta["max_seq_length"]
    model = task.build_model(cfg)
    state = read_weights(folder / WEIGHTS_FILE)
    check_state(model, state, folder / WEIGHTS_FILE, meta)
    model.load_state_dict(state)
    return task, model.to(device).eval(), tok, meta["max_seq_length"]


def model_files(folder: Path) -> list[Path]:
    """The files an output must not overwrite: the model folder's, and a fine-tuning run's own around it."""
    files = [f for f in folder.iterdir() if f.is_file()]
    if (folder.parent / "finetune.json").is_file():  # runs/t/model: also runs/t's own record of the run
        files += [folder.parent / name for name in ("finetune.json", "results.json", OWNER_MARKER)]
    return files


def _check_output(out: Path, inputs: list[Path], folder: Path) -> Path:
    check_output_file(out, "--out")
    refuse_input_as_output(out, [*inputs, *model_files(folder)], "--out")
    return out


def evaluate_cli(model_path: Path, data: Path, out: Path | None = None, batch_size: int = 64) -> dict:
    """Metrics of a fine-tuned model on a labelled file; printed and written as JSON."""
    device = resolve_device("auto")
    folder = resolve_finetuned(model_path)
    out = Path(out) if out else folder.parent / f"eval-{Path(data).stem}.json"
    _check_output(out, [Path(data)], folder)
    task, model, tok, max_len = load_finetuned(model_path, device)
    examples = task.read_eval(Path(data))
    feats = task.featurize(examples, tok, max_len, training=False)
    report_warnings(task, str(data))
    metrics, preds = evaluate(model, task, examples, feats, special_token_ids(tok)["pad"], batch_size, device,
                              autocast_for(device, "auto"))
    label, share = task.majority_fraction(preds)
    result = {"data": str(data), "examples": len(examples), **metrics}
    if label:
        result.update(majority_prediction=label, majority_share=share)
    make_folder(out.parent)
    write_json(out, result)
    for k, v in metrics.items():
        print(f"{k:>20} {v:.4f}" if isinstance(v, float) else f"{k:>20} {v}")
    print(f"written to {out}")
    return result


def predict_cli(model_path: Path, input_path: Path, out: Path, batch_size: int = 64, progress: bool = True) -> int:
    """Predictions for every example of ``input_path`` as JSONL (written atomically)."""
    device = resolve_device("auto")
    out = _check_output(Path(out), [Path(input_path)], resolve_finetuned(model_path))
    task, model, tok, max_len = load_finetuned(model_path, device)
    examples = task.read_predict(Path(input_path))
    if not examples:
        raise UserError(f"{input_path}: no examples to predict")
    feats = task.featurize(examples, tok, max_len, training=False)
    report_warnings(task, str(input_path))
    outputs = run_model(model, task, feats, special_token_ids(tok)["pad"], batch_size, device,
                        autocast_for(device, "auto"), progress)
    rows = task.predictions(examples, feats, outputs)
    report_warnings(task, str(input_path))
    make_folder(out.parent)
    with atomic_file(out, text=True) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} predictions written to {out}")
    return len(rows)
