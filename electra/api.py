"""The Python API, for notebooks: the command's verbs as functions, and ``load`` to use what they made.

    import electra
    electra.train_tokenizer("corpus/", 8000, "tok")
    electra.build_data("corpus/", "tok", "data")
    run = electra.pretrain("data", "runs/pre", preset="tiny", max_steps=3000)
    results = electra.finetune(run, "classification", "train.tsv", "dev.tsv", "runs/sst", seeds=3)
    model = electra.load("runs/sst")
    model.predict(["a gripping film", "dull and long"])   # [{"label": ..., "probabilities": {...}}, ...]

Each function takes its command's options (``overrides`` is ``--set``, as "key=value" strings or a dict), runs
the same code and validation, and raises ``electra.UserError`` with the one-line message the command would
print (``electra.Stopped`` when SIGTERM or Ctrl-C stopped a run after saving it). None calls ``sys.exit``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from electra.data.examples import ClassificationExample, QAExample, TaggingExample
from electra.data.tokenizer import load_tokenizer, special_token_ids
from electra.errors import UserError
from electra.finetuning.finetune import TASK_FILE
from electra.finetuning.predict import load_finetuned, resolve_finetuned
from electra.finetuning.tasks import reader_options
from electra.pretraining.inspect_tokens import load_discriminator, replaced_probabilities
from electra.runtime.device import autocast_for
from electra.runtime.distributed import resolve_device

Overrides = Sequence[str] | Mapping[str, Any] | None


def _settings(overrides: Overrides) -> list[str]:
    """``--set`` values from "key=value" strings or a {key: value} dict (True/False/None as the command spells them)."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise UserError(f"overrides: give a list of 'key=value' strings or a dict, not the string {overrides!r}")
    if isinstance(overrides, Mapping):
        spell = {True: "true", False: "false", None: "null"}
        return [f"{k}={spell.get(v, v) if isinstance(v, (bool, type(None))) else v}" for k, v in overrides.items()]
    return [str(s) for s in overrides]


def _inputs(paths: str | Path | Iterable[str | Path]) -> list[str]:
    return [str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths]


def train_tokenizer(corpus: str | Path | Iterable[str | Path], vocab_size: int, out: str | Path, *,
                    cased: bool = False, force_uncased: bool = False, min_frequency: int = 2,
                    min_char_frequency: int = 1, text_column: str = "text", progress: bool = True) -> Path:
    """`electra tokenizer train`: a WordPiece vocabulary of ``vocab_size`` entries in ``out``; returns ``out``."""
    from electra.data.tokenizer import train_tokenizer as train

    train(_inputs(corpus), vocab_size, out, lowercase=not cased, min_frequency=min_frequency, progress=progress,
          force_uncased=force_uncased, min_char_frequency=min_char_frequency, text_column=text_column)
    return Path(out)


def build_data(corpus: str | Path | Iterable[str | Path], tokenizer: str | Path, out: str | Path, *,
               max_seq_length: int = 128, valid_fraction: float = 0.01, seed: int = 12345,
               word_segmenter: str | None = None, text_column: str = "text", progress: bool = True) -> Path:
    """`electra data build`: the corpus packed into pre-training shards in ``out``; returns ``out``."""
    from electra.data.corpus import build_dataset

    build_dataset(_inputs(corpus), tokenizer, out, max_seq_length=max_seq_length, valid_fraction=valid_fraction,
                  seed=seed, progress=progress, word_segmenter=word_segmenter, text_column=text_column)
    return Path(out)


def pretrain(data: str | Path, out: str | Path, *, preset: str = "small", recipe: str | None = None,
             max_steps: int | None = None, flops_budget: float | None = None, overrides: Overrides = None,
             resume: bool = False, init: str | Path | Sequence[str | Path] | None = None,
             progress: bool = True) -> Path:
    """`electra pretrain`: train (or with ``resume`` continue) a run in ``out``; returns the run folder.

    ``init``: transformers weights to continue from (an export, a discriminator folder, or the hub's
    (discriminator, generator) pair); ``flops_budget``: the run's length in FLOPs instead of ``max_steps``."""
    from electra.pretraining.pretrain import pretrain as run

    settings = _settings(overrides)
    if flops_budget is not None:
        settings.append(f"train.flops_budget={flops_budget}")
    if isinstance(init, (list, tuple)):
        init = [Path(p) for p in init]
    return run(data, out, preset=preset, max_steps=max_steps, overrides=settings, resume=resume, progress=progress,
               init=init, recipe=recipe)


def export(run: str | Path, out: str | Path, *, step: int | None = None, best: bool = False,
           overwrite: bool = False) -> tuple[Path, Path | None]:
    """`electra export`: transformers folders (discriminator, generator or None) from a run's checkpoint.
    ``overwrite``: replace OUT/discriminator and OUT/generator even if electra did not write them."""
    from electra.pretraining.export import export_run
    from electra.runtime.checkpoint import chosen_checkpoint

    return export_run(Path(run), Path(out), chosen_checkpoint(Path(run), step, best), overwrite=overwrite)


def finetune(model: str | Path, task: str, train: str | Path, dev: str | Path, out: str | Path, *, seeds: int = 1,
             overrides: Overrides = None, text_column: str | int | None = None,
             text_pair_column: str | int | None = None, label_column: str | int | None = None,
             glue_task: str | None = None, token_column: str | int | None = None, tag_column: str | int | None = None,
             progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """`electra finetune`: fine-tune ``model`` (a run, an export or a transformers ELECTRA folder) on a
    ``task`` (classification, tagging, qa) for ``seeds`` seeds; returns results.json's content (per-seed dev
    metrics and their median, mean and std). The best seed's model is ``out/model``: ``load(out)`` uses it.
    ``overwrite``: replace ``out`` even if it is not an earlier fine-tuning output."""
    from electra.finetuning.finetune import finetune as run

    options = reader_options(task, text_column=text_column, text_pair_column=text_pair_column,
                             label_column=label_column, glue_task=glue_task, token_column=token_column,
                             tag_column=tag_column)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise UserError(f"seeds: a whole number of runs >= 1, got {seeds!r}")
    return run(Path(model), task, Path(train), Path(dev), Path(out), seeds=seeds, overrides=_settings(overrides),
               reader_options=options, progress=progress, overwrite=overwrite)


def export_onnx(model: str | Path, out: str | Path, *, int8: bool = False, dev: str | Path | None = None,
                overwrite: bool = False) -> dict[str, Any]:
    """`electra export-onnx`: ``model`` (a fine-tuned folder) as ONNX in ``out`` (fp32, and int8 with ``int8``),
    checked against PyTorch; returns what ``out/onnx.json`` records (files, sizes, parity, dev scores)."""
    from electra.finetuning.onnx_export import export_onnx as run

    return run(Path(model), Path(out), int8=int8, dev=dev, overwrite=overwrite)


class FineTunedModel:
    """A fine-tuned model ready to use: ``predict`` in-memory inputs, ``evaluate`` a labelled file.

    ``task`` (the task family's object: labels, reader options), ``model`` (a torch module in eval mode) and
    ``tokenizer`` (a ``tokenizers.Tokenizer``) are there for anything else."""

    def __init__(self, folder: Path, device: str = "auto"):
        self.folder = folder
        try:
            self.device = resolve_device(device, "device")
        except RuntimeError as e:  # torch's own refusal of a name it does not know
            raise UserError(f"device: {e}") from None
        self.task, self.model, self.tokenizer, self.max_seq_length = load_finetuned(folder, self.device)
        # "pytorch", or for an `electra export-onnx` folder the ONNX Runtime model it runs ("onnx-int8", ...)
        self.backend = getattr(self.model, "backend", "pytorch")
        self._autocast = autocast_for(self.device, "auto")
        self._pad = special_token_ids(self.tokenizer)["pad"]

    def __repr__(self) -> str:
        return f"FineTunedModel({str(self.folder)!r}, task={self.task.name!r}, labels={self.task.labels[:10]})"

    def examples(self, inputs: Iterable[Any]) -> list:
        """The task's examples from Python values: classification a text or a (text, text pair); tagging a
        sentence (split on whitespace) or a list of words; qa a {"question", "context"[, "id"]} dict."""
        examples = []
        for i, value in enumerate(inputs):
            where = f"inputs[{i}]"
            if self.task.name == "classification":
                pair = isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, str) for v in value)
                if not (isinstance(value, str) or pair):
                    raise UserError(f"{where}: a classification input is a text or a (text, text pair), "
                                    f"got {type(value).__name__}")
                examples.append(ClassificationExample(*value, source=where) if pair
                                else ClassificationExample(value, source=where))
            elif self.task.name == "tagging":
                words = value.split() if isinstance(value, str) else value
                if not isinstance(words, (list, tuple)) or not words or not all(isinstance(w, str) for w in words):
                    raise UserError(f"{where}: a tagging input is a sentence or a non-empty list of words")
                examples.append(TaggingExample(list(words), source=where))
            else:
                if not (isinstance(value, Mapping) and isinstance(value.get("question"), str)
                        and isinstance(value.get("context"), str)):
                    raise UserError(f"{where}: a qa input is a dict with a 'question' and a 'context' string")
                examples.append(QAExample(str(value.get("id", i)), value["question"], value["context"], source=where))
        if not examples:
            raise UserError("inputs: nothing to predict")
        return examples

    def predict(self, inputs: Iterable[Any], batch_size: int = 64) -> list[dict[str, Any]]:
        """One dict per input, as `electra predict` writes them (labels and probabilities, tags per word, or
        answers)."""
        from electra.finetuning.finetune import run_model

        examples = self.examples(inputs)
        features = self.task.featurize(examples, self.tokenizer, self.max_seq_length, training=False)
        outputs = run_model(self.model, self.task, features, self._pad, batch_size, self.device, self._autocast)
        return self.task.predictions(examples, features, outputs)

    def evaluate(self, path: str | Path, batch_size: int = 64) -> dict[str, Any]:
        """`electra evaluate`'s metrics on a labelled file in the task's format (nothing is written)."""
        from electra.finetuning.finetune import evaluate

        examples = self.task.read_eval(Path(path))
        features = self.task.featurize(examples, self.tokenizer, self.max_seq_length, training=False)
        metrics, _ = evaluate(self.model, self.task, examples, features, self._pad, batch_size, self.device,
                              self._autocast)
        return metrics


class Discriminator:
    """A pre-trained ELECTRA discriminator: ``replaced_probabilities(text)`` is `electra inspect` as values.
    ``model`` (ElectraForPreTraining, eval mode) and ``tokenizer`` are there for anything else."""

    def __init__(self, path: Path):
        self.path = path
        self.model, tokenizer_dir = load_discriminator(path)
        self.tokenizer = load_tokenizer(tokenizer_dir)

    def __repr__(self) -> str:
        return f"Discriminator({str(self.path)!r}, hidden_size={self.model.config.hidden_size})"

    def replaced_probabilities(self, text: str) -> list[tuple[str, float]]:
        """(token, P(replaced)) for every token of ``text`` but [CLS] and [SEP]."""
        if not isinstance(text, str):
            raise UserError(f"text: a string, got {type(text).__name__}")
        return replaced_probabilities(self.model, self.tokenizer, text)


def load(path: str | Path, device: str = "auto") -> FineTunedModel | Discriminator:
    """What a folder holds, ready to use: a fine-tuned model (`electra finetune --out`, or its ``model/``) as a
    ``FineTunedModel``; a pre-training run, an export or a transformers ElectraForPreTraining folder as a
    ``Discriminator``."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such folder; give a fine-tuning --out, a pre-training run or an export")
    if any((folder / TASK_FILE).is_file() for folder in (path, path / "model")):
        return FineTunedModel(resolve_finetuned(path), device)
    return Discriminator(path)


__all__ = ["train_tokenizer", "build_data", "pretrain", "export", "finetune", "export_onnx", "load",
           "FineTunedModel", "Discriminator"]  # and electra.serve (electra/serving: it serves what ``load`` gives)
