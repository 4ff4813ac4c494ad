"""`electra evaluate` and `electra predict`: load a fine-tuned model folder and score or label a file."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from electra.config import ModelConfig
from electra.data.tokenizer import load_tokenizer, special_token_ids
from electra.errors import UserError
from electra.finetuning.finetune import TASK_FILE, check_vocabulary, evaluate, report_warnings, run_model
from electra.finetuning.tasks import make_task
from electra.runtime.device import autocast_for
from electra.runtime.distributed import resolve_device
from electra.runtime.files import read_json_file, write_json


def resolve_finetuned(path: Path) -> Path:
    """The folder holding a fine-tuned model: ``runs/t`` -> ``runs/t/model``; a seed's ``best/`` as it is."""
    path = Path(path)
    for folder in (path / "model", path):
        if (folder / TASK_FILE).is_file():
            return folder
    raise UserError(f"{path}: not a fine-tuned model (no {TASK_FILE}); give the --out folder of `electra finetune`")


def load_finetuned(path: Path, device: torch.device):
    """(task, model, tokenizer, max_seq_length) of a fine-tuned model folder."""
    folder = resolve_finetuned(path)
    meta = read_json_file(folder / TASK_FILE)
    task = make_task(meta["task"], meta.get("options"), meta)
    task.qa_options = meta.get("qa_options", {})
    cfg = ModelConfig.from_hf_dict(read_json_file(folder / "config.json"), str(folder / "config.json"))
    model = task.build_model(cfg)
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return task, model.to(device).eval(), load_tokenizer(folder), meta["max_seq_length"]


def evaluate_cli(model_path: Path, data: Path, out: Path | None = None, batch_size: int = 64) -> dict:
    """Metrics of a fine-tuned model on a labelled file; printed and written as JSON."""
    device = resolve_device("auto")
    task, model, tok, max_len = load_finetuned(model_path, device)
    check_vocabulary(tok, model.config, resolve_finetuned(model_path))
    examples = task.read_eval(Path(data))
    feats = task.featurize(examples, tok, max_len, training=False)
    report_warnings(task, str(data))
    metrics, preds = evaluate(model, task, examples, feats, special_token_ids(tok)["pad"], batch_size, device,
                              autocast_for(device, "auto"))
    label, share = task.majority_fraction(preds)
    result = {"data": str(data), "examples": len(examples), **metrics}
    if label:
        result.update(majority_prediction=label, majority_share=share)
    out = Path(out) if out else resolve_finetuned(model_path).parent / f"eval-{Path(data).stem}.json"
    write_json(out, result)
    for k, v in metrics.items():
        print(f"{k:>20} {v:.4f}" if isinstance(v, float) else f"{k:>20} {v}")
    print(f"written to {out}")
    return result


def predict_cli(model_path: Path, input_path: Path, out: Path, batch_size: int = 64, progress: bool = True) -> int:
    """Predictions for every example of ``input_path`` as JSONL (written atomically)."""
    device = resolve_device("auto")
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
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)
    print(f"{len(rows)} predictions written to {out}")
    return len(rows)
