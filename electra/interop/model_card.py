"""Model cards: the ``README.md`` a model hub shows, written into every export and fine-tuned model folder.

A card is YAML metadata between ``---`` lines (the hub's keys: ``library_name``, ``pipeline_tag``, ``tags``,
``base_model`` ...), then what the model is, what it was trained on and how, what it scored, the curves,
and how to load it. Everything in it is read from the run's own files (config.json, run.json, the data
manifest, metrics.jsonl, results.json): nothing is typed in by hand. The metadata is emitted by a small
writer (strings quoted as JSON, which YAML reads) so that no YAML library is needed at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from electra.errors import UserError
from electra.runtime.files import copy_file, read_json_file, write_text
from electra.runtime.metrics_log import read_metrics

CARD = "README.md"
CURVES = "curves.png"


def _yaml(meta: dict[str, Any]) -> str:
    """Flat YAML: scalars and lists of scalars, strings JSON-quoted (a JSON string is a YAML string)."""
    lines = []
    for key, value in meta.items():
        if value is None or value == []:
            continue
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"- {json.dumps(v, ensure_ascii=False)}" for v in value]
        else:
            lines.append(f"{key}: {json.dumps(value, ensure_ascii=False)}")
    return "---\n" + "\n".join(lines) + "\n---\n"


def _records(run: Path) -> list[dict]:
    """The run's metrics records with an integer step (a torn or damaged line is reported and skipped)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [r for r in read_metrics(path) if isinstance(r.get("step"), int)]


def _json_or_empty(path: Path) -> dict:
    """A JSON object the card only describes (run.json, the data's manifest): damaged or missing is {}."""
    try:
        value = read_json_file(path) if path.is_file() else {}
    except UserError:
        return {}
    return value if isinstance(value, dict) else {}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(rows: list[tuple[str, Any]]) -> str:
    return "| | |\n|---|---|\n" + "".join(f"| {k} | {_fmt(v)} |\n" for k, v in rows)


def _data_summary(run: Path) -> list[tuple[str, Any]]:
    info = _json_or_empty(run / "run.json")
    manifest_path = Path(str(info.get("data", ""))) / "manifest.json"
    m = _json_or_empty(manifest_path) if info.get("data") else {}
    if not m:
        return [("data folder", info.get("data", "unknown"))]
    source, splits = m.get("source", {}), m.get("splits", {})
    files = source.get("files", [])
    shown = ", ".join(Path(f).name for f in files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    rows = [("corpus files", shown or "unknown"), ("documents", source.get("num_documents")),
            ("training examples", splits.get("train", {}).get("num_examples")),
            ("training tokens", splits.get("train", {}).get("num_tokens")),
            ("held-out examples", splits.get("valid", {}).get("num_examples")),
            ("sequence length", m.get("max_seq_length")), ("vocabulary", m.get("vocab_size"))]
    if "word_segmenter" in m:
        rows.append(("word segmenter (whole-word masking)", m["word_segmenter"]))
    return rows


def pretraining_card(run: Path, folder: Path, kind: str, step: int, cfg: dict[str, Any]) -> str:
    """The card of an export's ``discriminator`` or ``generator`` folder, from run folder ``run`` at ``step``;
    ``cfg`` the run's config as loaded (a config.json from an older version lacks the newer fields)."""
    t, model = cfg["train"], cfg["model"]
    records = _records(run)
    train = [r for r in records if "flops" in r and r["step"] <= step]
    evals = [r for r in records if r.get("event") == "eval" and r["step"] <= step]
    last, last_eval = (train[-1] if train else {}), (evals[-1] if evals else {})
    arch = (_json_or_empty(folder / "config.json").get("architectures") or ["?"])[0]
    is_disc = kind == "discriminator"
    meta = {"library_name": "transformers", "pipeline_tag": None if is_disc else "fill-mask",
            "tags": ["electra", "pretraining", kind, f"preset-{cfg['preset']}"], "inference": False if is_disc else None}
    what = ("the discriminator: for every token, the probability that it was replaced (replaced-token "
            "detection). Fine-tune it: it is the encoder ELECTRA is for."
            if is_disc and arch == "ElectraForPreTraining" else
            "the generator: a small masked language model that proposed the replacements."
            if not is_disc else f"the {arch} trained by the {t['objective']} objective.")
    config_rows = [("preset / recipe", f"{cfg['preset']} / {cfg.get('recipe', 'paper')}"),
                   ("objective", t["objective"]), ("masking", f"{t['masking']}, {t['mask_prob']:g} of tokens"),
                   ("hidden size × layers × heads",
                    f"{model['hidden_size']} × {model['num_hidden_layers']} × {model['num_attention_heads']}"),
                   ("embedding size", model["embedding_size"]),
                   ("generator (width, depth fraction)",
                    f"{cfg['generator']['hidden_fraction']:g}, {cfg['generator']['layers_fraction']:g}"),
                   ("batch size", t["batch_size"]), ("peak learning rate", t["learning_rate"]),
                   ("schedule steps", t["max_steps"])]
    progress_rows = [("steps", step), ("tokens seen", last.get("tokens_seen")),
                     ("training FLOPs (analytic)", f"{last['flops']:.3g}" if "flops" in last else None)]
    metric_keys = ["gen_loss", "gen_acc", "disc_loss", "disc_acc", "disc_auc"]
    metric_rows = [(f"train {k} (last window)", last[k]) for k in metric_keys if k in last]
    metric_rows += [(k, v) for k, v in last_eval.items() if k.startswith("eval_") and isinstance(v, float)]
    loader = "ElectraForPreTraining" if arch == "ElectraForPreTraining" else arch
    body = [
        f"# ELECTRA {kind} ({cfg['preset']}, {t['objective']})\n",
        f"This folder is {what} It was pre-trained with the `electra` toolkit (Clark et al., ICLR 2020, "
        f"\"ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators\").\n",
        "## Training data\n", _table(_data_summary(run)),
        "## Configuration\n", _table(config_rows),
        "## Training\n", _table([r for r in progress_rows if r[1] is not None]),
        "## Metrics\n",
        (_table(metric_rows) if metric_rows else "No metrics were logged.\n")
        + ("\n`eval_unigram_auc` is the held-out yardstick: tokens replaced by draws from the corpus's "
           "unigram distribution, which only context gives away (0.5 is chance).\n"
           if "eval_unigram_auc" in last_eval else ""),
    ]
    if (folder / CURVES).is_file():
        body += ["## Curves\n", f"![training curves]({CURVES})\n"]
    body += ["## Use\n", "```python\nfrom transformers import ElectraTokenizerFast, " + loader + "\n\n"
             f"tokenizer = ElectraTokenizerFast.from_pretrained(\"path/to/{kind}\")\n"
             f"model = {loader}.from_pretrained(\"path/to/{kind}\")\n```\n"]
    return _yaml(meta) + "\n" + "\n".join(body)


def write_pretraining_card(run: Path, folder: Path, kind: str, step: int, cfg: dict[str, Any]) -> None:
    """README.md (and the run's curves.png beside it) in an export folder."""
    if (run / CURVES).is_file():
        copy_file(run / CURVES, folder / CURVES)
    write_text(folder / CARD, pretraining_card(run, folder, kind, step, cfg))


_PIPELINES = {"classification": "text-classification", "tagging": "token-classification", "qa": "question-answering"}


def finetuned_card(out: Path, results: dict, finetune: dict) -> str:
    """The card of ``runs/t/model``: the task, where the encoder came from, and the dev scores over seeds."""
    task = finetune["task"].get("name") or results["task"]
    source = finetune.get("source", {})
    meta = {"library_name": "transformers", "pipeline_tag": _PIPELINES.get(task),
            "tags": ["electra", "fine-tuned", task], "base_model": None}
    summary = results["summary"][results["primary_metric"]]
    seeds = ", ".join(f"{r[results['primary_metric']]:.4f}" for r in results["seeds"])
    labels = finetune["task"].get("labels")
    rows = [("task", task), ("encoder", source.get("model")), ("initialisation", source.get("init")),
            ("train file", finetune.get("train")), ("dev file", finetune.get("dev")),
            ("labels", ", ".join(map(str, labels))[:200] if labels else None),
            (f"dev {results['primary_metric']} (median of {len(results['seeds'])} seeds)", summary["median"]),
            ("mean ± std", f"{summary['mean']:.4f} ± {summary['std']:.4f}"), ("per seed", seeds),
            ("this folder", results.get("model"))]
    cfg = finetune.get("config", {})
    config_rows = [(k, cfg[k]) for k in ("learning_rate", "layerwise_lr_decay", "epochs", "batch_size",
                                         "max_seq_length", "seed") if k in cfg]
    head = {"classification": "ElectraForSequenceClassification", "tagging": "ElectraForTokenClassification",
            "qa": "ElectraForQuestionAnswering"}.get(task, "AutoModel")
    body = [f"# ELECTRA fine-tuned for {task}\n",
            "The best seed of an `electra finetune` run (the paper's recipe: AdamW, layer-wise learning-rate "
            "decay, linear warm-up and decay); the weights are those of its best dev evaluation.\n",
            "## Results\n", _table([r for r in rows if r[1] is not None]),
            "## Fine-tuning configuration\n", _table(config_rows),
            "## Use\n", f"```python\nfrom transformers import ElectraTokenizerFast, {head}\n\n"
            "tokenizer = ElectraTokenizerFast.from_pretrained(\"path/to/model\")\n"
            f"model = {head}.from_pretrained(\"path/to/model\")\n```\n"
            "or `electra predict --model path/to/run --input texts.txt --out predictions.jsonl`.\n"]
    return _yaml(meta) + "\n" + "\n".join(body)
