"""The three fine-tuning task families behind one small interface (as Google's ``Task``).

A task reads its files (``electra.data.tasks``), turns examples into features (token ids plus
training targets), builds its transformers-named head, computes its loss, and turns the model's
outputs back into metrics and predictions at the level the user thinks in: one label per text,
one tag per *word*, one answer string per question.

Features are plain dicts of Python lists, one per model input window; ``collate`` pads a batch of
them to its longest member (dynamic padding). Shapes: B batch, T padded length, C classes.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from electra.data import readers as readers
from electra.errors import UserError
from electra.finetuning import metrics
from electra.model import ElectraForQuestionAnswering, ElectraForSequenceClassification, ElectraForTokenClassification

IGNORE = -100  # target of positions without a label (word continuations, specials, padding)


def min_seq_length(task: str, pairs: bool = False, max_query_length: int = 64) -> int:
    """The smallest ``max_seq_length`` that leaves ``task``'s inputs at least one token of text each: below it
    tokenizers can no longer truncate (it silently keeps whole texts, longer than the model's positions) or the
    model sees only special tokens. Single texts and tagging: [CLS] 1 [SEP] = 3; text pairs: [CLS] 1 [SEP] 1
    [SEP] = 5; qa: [CLS] a question of up to ``max_query_length`` tokens [SEP] 1 context token [SEP] (the
    window stride is clamped to the window, so doc_stride sets no minimum)."""
    if task == "qa":
        return max_query_length + 4
    return 5 if pairs else 3


def check_seq_length(max_length: int, task: str, pairs: bool = False, max_query_length: int = 64) -> None:
    """A UserError naming max_seq_length and the smallest value that works, when ``max_length`` is below it."""
    need = min_seq_length(task, pairs, max_query_length)
    if max_length < need:
        what = {"qa": f"a question of up to max_query_length {max_query_length} tokens, 3 special tokens and at "
                      f"least 1 context token",
                "tagging": "[CLS], [SEP] and at least 1 word piece"}.get(
            task, "[CLS], [SEP], [SEP] and at least 1 token of each text" if pairs
            else "[CLS], [SEP] and at least 1 token of text")
        raise UserError(f"max_seq_length {max_length} is too small for {task}{' text pairs' if pairs else ''}: it "
                        f"needs {what}; give --set max_seq_length={need} or more")


_TRUNCATING: dict[tuple[int, int], tuple[Tokenizer, Tokenizer]] = {}  # (id(tok), max_length) -> (tok, copy)


def truncating(tok: Tokenizer, max_length: int) -> Tokenizer:
    """A copy of ``tok`` that truncates to ``max_length`` (the caller's tokenizer stays untouched).

    Made once per tokenizer and length, then reused: copying serialises and re-parses the whole vocabulary
    (milliseconds for 30k entries), which a service featurising one request at a time would pay on every
    request. The cache holds the original too, so an id is never reused while its entry lives."""
    key = (id(tok), max_length)
    hit = _TRUNCATING.get(key)
    if hit is not None and hit[0] is tok:
        return hit[1]
    t = Tokenizer.from_str(tok.to_str())
    t.no_padding()
    t.enable_truncation(max_length, strategy="longest_first")
    if len(_TRUNCATING) >= 16:  # a few models and lengths per process at most; forget the oldest
        _TRUNCATING.pop(next(iter(_TRUNCATING)))
    _TRUNCATING[key] = (tok, t)
    return t


class Task:
    """Base: subclasses fill in the task-specific parts."""

    name = ""
    head_class: type = ElectraForSequenceClassification
    primary_metric = ""

    def __init__(self, options: dict[str, Any] | None = None, state: dict[str, Any] | None = None):
        self.options = dict(options or {})   # reader options (columns, layouts)
        self.labels: list[str] = list((state or {}).get("labels", []))
        self.warnings: Counter = Counter()   # "truncated" -> count, reported once per file

    # ----------------------------------------------------------------- saved with the model
    def state(self) -> dict[str, Any]:
        return {"task": self.name, "labels": self.labels, "options": self.options}

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def config_fields(self) -> dict[str, Any]:
        """Extra config.json fields for the transformers class (label names)."""
        return {"id2label": {str(i): l for i, l in enumerate(self.labels)},
                "label2id": {l: i for i, l in enumerate(self.labels)}}

    def build_model(self, config):
        return self.head_class(config, self.num_labels)

    def majority_fraction(self, predictions: list[dict]) -> tuple[str, float]:
        """The most frequent predicted label and its share (to detect a collapsed run)."""
        return "", 0.0


class FeatureList(list):
    """A list of feature dicts that can carry task data for decoding (QA's window offsets) in ``extra``."""

    extra: Any = None


def collate(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest member. (B, T) ids, types, mask; targets padded with IGNORE."""
    T = max(len(f["input_ids"]) for f in features)
    out: dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
    for f in features:
        n = len(f["input_ids"])
        out["input_ids"].append(f["input_ids"] + [pad_id] * (T - n))
        out["token_type_ids"].append(f["token_type_ids"] + [0] * (T - n))
        out["attention_mask"].append([1] * n + [0] * (T - n))
    batch = {k: torch.tensor(v) for k, v in out.items()}
    first = features[0]
    if "labels" in first:        # tagging: per token
        batch["labels"] = torch.tensor([f["labels"] + [IGNORE] * (T - len(f["labels"])) for f in features])
    for key in ("label", "start_positions", "end_positions"):
        if key in first:
            batch[key] = torch.tensor([f[key] for f in features])
    return batch


# --------------------------------------------------------------------------- classification

class ClassificationTask(Task):
    """One label (or a regression score) per text or text pair, from the [CLS] position."""

    name = "classification"
    head_class = ElectraForSequenceClassification

    def __init__(self, options=None, state=None):
        super().__init__(options, state)
        self.is_regression = bool((state or {}).get("is_regression", False))

    def state(self):
        return {**super().state(), "is_regression": self.is_regression}

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)

    @property
    def primary_metric(self) -> str:
        if self.is_regression:
            return "spearman"
        return "accuracy"

    def config_fields(self):
        if self.is_regression:
            return {"problem_type": "regression", "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}
        return {**super().config_fields(), "problem_type": "single_label_classification"}

    def _read(self, path: Path, labelled: bool):
        examples, info = readers.read_classification(path, has_labels=labelled, **self.options)
        return examples, info

    def read_train(self, path: Path):
        examples, info = self._read(path, True)
        self.is_regression = bool(info.get("is_regression", False))
        if not self.is_regression:
            self.labels = sorted({str(e.label) for e in examples}, key=_label_order)
            if len(self.labels) < 2:
                raise UserError(f"{path}: every example has the label {self.labels[0]!r}; a classifier needs >= 2 labels")
        return examples

    def read_eval(self, path: Path):
        examples, _ = self._read(path, True)
        if not self.is_regression:
            readers.check_labels(self.labels, examples, path)
        return examples

    def read_predict(self, path: Path):
        path = Path(path)
        if path.suffix in (".txt",) or (path.suffix == ".jsonl" and not any(self.options.values())):
            return readers.read_text_lines(path)
        return self._read(path, False)[0]

    def featurize(self, examples, tok: Tokenizer, max_length: int, training: bool) -> list[dict]:
        check_seq_length(max_length, self.name, pairs=any(e.text_pair is not None for e in examples))
        t = truncating(tok, max_length)
        pairs = [(e.text, e.text_pair) if e.text_pair is not None else e.text for e in examples]
        feats = []
        for i, (e, enc) in enumerate(zip(examples, t.encode_batch(pairs))):
            if enc.overflowing:
                self.warnings["truncated"] += 1
            f = {"input_ids": enc.ids, "token_type_ids": enc.type_ids, "example": i}
            if training or e.label is not None:
                f["label"] = float(e.label) if self.is_regression else self.labels.index(str(e.label))
            feats.append(f)
        return feats

    def loss(self, logits: torch.Tensor, batch) -> torch.Tensor:
        if self.is_regression:
            return F.mse_loss(logits.squeeze(-1).float(), batch["label"].float())
        return F.cross_entropy(logits.float(), batch["label"])

    def outputs(self, logits: torch.Tensor, batch) -> list[np.ndarray]:
        return list(logits.float().cpu().numpy())  # one (C,) row per feature

    def predictions(self, examples, features, outputs) -> list[dict]:
        rows = []
        for e, out in zip(examples, outputs):
            row = {"text": e.text} if e.text_pair is None else {"text": e.text, "text_pair": e.text_pair}
            if self.is_regression:
                row["score"] = float(out[0])
            else:
                p = np.exp(out - out.max())
                p /= p.sum()
                row["label"] = self.labels[int(p.argmax())]
                row["probabilities"] = {l: round(float(x), 6) for l, x in zip(self.labels, p)}
            rows.append(row)
        return rows

    def metrics(self, examples, features, outputs) -> dict[str, float]:
        rows = self.predictions(examples, features, outputs)
        if self.is_regression:
            return metrics.classification_metrics([r["score"] for r in rows], [float(e.label) for e in examples],
                                                  1, True)
        preds = [self.labels.index(r["label"]) for r in rows]
        gold = [self.labels.index(str(e.label)) for e in examples]
        return metrics.classification_metrics(preds, gold, len(self.labels), False)

    def majority_fraction(self, predictions):
        if self.is_regression or not predictions:
            return "", 0.0
        label, n = Counter(r["label"] for r in predictions).most_common(1)[0]
        return label, n / len(predictions)


def _label_order(label: str):
    """Numeric labels in numeric order ("2" before "10"), then text labels alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


# --------------------------------------------------------------------------- tagging

class TaggingTask(Task):
    """One tag per word: the first word piece carries the word's label; the rest are ignored."""

    name = "tagging"
    head_class = ElectraForTokenClassification
    primary_metric = "token_accuracy"

    def read_train(self, path: Path):
        examples = readers.read_conll(path, **self.options)
        counts = Counter(t for e in examples for t in e.tags)
        self.labels = sorted(counts)
        self.fallback_tag = counts.most_common(1)[0][0]
        return examples

    def read_eval(self, path: Path):
        examples = readers.read_conll(path, **self.options)
        known = set(self.labels)
        for e in examples:
            unknown = [t for t in e.tags if t not in known]
            if unknown:
                shown = ", ".join(self.labels[:20]) + (" ..." if len(self.labels) > 20 else "")
                raise UserError(f"{e.source}: tag {unknown[0]!r} does not occur in the training data "
                                f"(known: {shown}); fix the file or add examples of it to train")
        return examples

    def read_predict(self, path: Path):
        path = Path(path)
        if path.suffix == ".txt":  # one sentence per line, words split on whitespace
            return readers.read_text_lines(path)
        return readers.read_conll(path, has_labels=False, **self.options)

    def state(self):
        return {**super().state(), "fallback_tag": getattr(self, "fallback_tag", self.labels[0] if self.labels else "")}

    def __init__(self, options=None, state=None):
        super().__init__(options, state)
        self.fallback_tag = (state or {}).get("fallback_tag", "")

    def featurize(self, examples, tok: Tokenizer, max_length: int, training: bool) -> list[dict]:
        check_seq_length(max_length, self.name)
        t = truncating(tok, max_length)
        word_lists = [_words(e) for e in examples]
        feats = []
        encodings = t.encode_batch(word_lists, is_pretokenized=True)
        for i, (e, words, enc) in enumerate(zip(examples, word_lists, encodings)):
            starts = [-1] * len(words)  # token position of each word's first piece; -1 = no piece (truncated)
            for pos, w in enumerate(enc.word_ids):
                if w is not None and starts[w] < 0:
                    starts[w] = pos
            if enc.overflowing:
                self.warnings["truncated"] += 1
            f = {"input_ids": enc.ids, "token_type_ids": enc.type_ids, "word_starts": starts, "example": i}
            if getattr(e, "tags", None) is not None:
                labels = [IGNORE] * len(enc.ids)
                for w, pos in enumerate(starts):
                    if pos >= 0:
                        labels[pos] = self.labels.index(e.tags[w]) if training else self._tag_id(e.tags[w])
                f["labels"] = labels
            feats.append(f)
        return feats

    def _tag_id(self, tag: str) -> int:
        return self.labels.index(tag) if tag in self.labels else IGNORE

    def loss(self, logits, batch):
        return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE)

    def outputs(self, logits, batch):
        lengths = batch["attention_mask"].sum(1).tolist()
        ids = logits.argmax(-1).cpu().numpy()  # (B, T): only the best tag is needed
        return [row[:n] for row, n in zip(ids, lengths)]

    def predictions(self, examples, features, outputs) -> list[dict]:
        rows = []
        for e, f, ids in zip(examples, features, outputs):
            tags = []
            for pos in f["word_starts"]:
                if pos < 0:
                    self.warnings["words without a prediction (truncated)"] += 1
                    tags.append(self.fallback_tag)
                else:
                    tags.append(self.labels[int(ids[pos])])
            rows.append({"words": _words(e), "tags": tags})
        return rows

    def metrics(self, examples, features, outputs):
        preds = [r["tags"] for r in self.predictions(examples, features, outputs)]
        gold = [e.tags for e in examples]
        result = {"token_accuracy": metrics.token_accuracy(preds, gold)}
        tags = {t for seq in gold for t in seq}
        if tags != {"O"} and all(t == "O" or t[:2] in ("B-", "I-", "E-", "S-") for t in tags):  # an entity tag set
            spans = metrics.span_f1(preds, gold)
            result.update(span_precision=spans["precision"], span_recall=spans["recall"], span_f1=spans["f1"])
        return result

    def majority_fraction(self, predictions):
        tags = Counter(t for r in predictions for t in r["tags"])
        if not tags:
            return "", 0.0
        tag, n = tags.most_common(1)[0]
        return tag, n / sum(tags.values())


def _words(example) -> list[str]:
    """Words of a tagging example, or of a plain text line split on whitespace (prediction input)."""
    if hasattr(example, "words"):
        return list(example.words)
    return example.text.split()


# --------------------------------------------------------------------------- extractive QA

class QATask(Task):
    """SQuAD-style span extraction: start and end logits over the context tokens of each window."""

    name = "qa"
    head_class = ElectraForQuestionAnswering
    primary_metric = "f1"

    def __init__(self, options=None, state=None):
        super().__init__(options, state)
        self.version = (state or {}).get("version", "1.1")   # of the training file: what the model learned
        self.eval_version: str | None = None                  # of the file being evaluated: how it is scored
        self.qa_options: dict[str, Any] = {}

    @property
    def num_labels(self) -> int:
        return 2

    def config_fields(self):
        return {}

    def state(self):
        return {**super().state(), "version": self.version}

    def read_train(self, path: Path):
        examples, self.version = readers.read_squad(path)
        return examples

    def read_eval(self, path: Path):
        """The file's questions; it is scored with its own SQuAD version. A model trained on v1.1 has never
        been shown an unanswerable question: its "no answer" decisions on a v2.0 file are untrained (warned)."""
        examples, self.eval_version = readers.read_squad(path)
        if self.eval_version == "2.0" and self.version != "2.0":
            self.warnings["questions scored as SQuAD v2.0 by a model trained on v1.1 (no unanswerable questions): "
                          "its no-answer predictions are untrained"] += len(examples)
        return examples

    read_predict = read_eval

    def featurize(self, examples, tok: Tokenizer, max_length: int, training: bool) -> list[dict]:
        from electra.finetuning.qa import featurize_qa

        o = self.qa_options
        check_seq_length(max_length, self.name, max_query_length=o.get("max_query_length", 64))
        feats, counts = featurize_qa(examples, tok, max_seq_length=max_length, doc_stride=o.get("doc_stride", 128),
                                     max_query_length=o.get("max_query_length", 64), training=training)
        if training and counts.get("answer_not_in_context"):
            self.warnings["examples skipped: the answer text is not in the context"] += counts["answer_not_in_context"]
        if counts.get("questions_truncated"):
            self.warnings[f"questions truncated to {o.get('max_query_length', 64)} tokens"] += counts["questions_truncated"]
        rows = FeatureList()
        rows.extra = feats  # the window offsets that decoding needs
        for j in range(len(feats.input_ids)):
            f = {"input_ids": feats.input_ids[j], "token_type_ids": feats.token_type_ids[j],
                 "example": feats.example_index[j], "window": j}
            if training:
                f["start_positions"] = feats.start_positions[j]
                f["end_positions"] = feats.end_positions[j]
            rows.append(f)
        return rows

    def loss(self, logits, batch):
        start, end = logits
        return (F.cross_entropy(start.float(), batch["start_positions"])
                + F.cross_entropy(end.float(), batch["end_positions"])) / 2

    def outputs(self, logits, batch):
        start, end = logits
        lengths = batch["attention_mask"].sum(1).tolist()
        s, e = start.float().cpu().numpy(), end.float().cpu().numpy()
        return [(s[i, :n], e[i, :n]) for i, n in enumerate(lengths)]

    def _decode(self, examples, features, outputs):
        from electra.finetuning.qa import postprocess_qa

        o = self.qa_options
        T = max(len(x[0]) for x in outputs)
        start = np.full((len(outputs), T), -1e9, dtype=np.float32)
        end = np.full((len(outputs), T), -1e9, dtype=np.float32)
        for i, (s, e) in enumerate(outputs):
            start[i, :len(s)], end[i, :len(e)] = s, e
        return postprocess_qa(examples, features.extra, start, end, n_best_size=o.get("n_best_size", 20),
                              max_answer_length=o.get("max_answer_length", 30),
                              version_2=(self.eval_version or self.version) == "2.0",
                              null_score_diff_threshold=o.get("null_score_diff_threshold", 0.0))

    def predictions(self, examples, features, outputs) -> list[dict]:
        answers, nbest, null_diff = self._decode(examples, features, outputs)
        rows = []
        for e in examples:
            best = next((c for c in nbest.get(e.qid, []) if c["text"] == answers[e.qid]), None)
            row = {"id": e.qid, "question": e.question, "answer": answers[e.qid]}
            if best is not None and answers[e.qid]:
                row.update(start=best["start_char"], end=best["end_char"], score=round(float(best["score"]), 4))
            if e.qid in null_diff and math.isfinite(null_diff[e.qid]):
                row["null_score_diff"] = round(float(null_diff[e.qid]), 4)
            rows.append(row)
        return rows

    def metrics(self, examples, features, outputs):
        answers, _, null_diff = self._decode(examples, features, outputs)
        if (self.eval_version or self.version) == "2.0":
            # The raw score_null - best_non_null as the official script's na_probs (Google's pipeline passes
            # the raw null odds too): a squashed score (a sigmoid) ties every question beyond ~37 in float64 and
            # the threshold search then reaches scores no threshold gives. The answers already apply
            # null_score_diff_threshold, so no second threshold (inf); best_*_thresh is on the same scale.
            floor = min((d for d in null_diff.values() if math.isfinite(d)), default=0.0) - 1.0
            return metrics.squad_evaluate(examples, answers, na_probs=null_diff, na_prob_thresh=math.inf,
                                          version="2.0", na_prob_floor=floor)
        return metrics.squad_evaluate(examples, answers, version="1.1")


TASKS = {"classification": ClassificationTask, "tagging": TaggingTask, "qa": QATask}


def reader_options(task: str, *, text_column=None, text_pair_column=None, label_column=None, glue_task=None,
                   token_column=None, tag_column=None) -> dict[str, Any]:
    """The reader options of ``task`` from the command's column options (None: not given, the reader detects the
    layout). A column is a name, or a 0-based index (negative: from the end), given as an int or a digit string.
    Options of another task family are ignored, as on the command line."""
    def column(value):
        return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value

    if task == "tagging":
        return {"token_column": column(token_column), "tag_column": column(tag_column)}
    if task == "classification":
        return {"text_column": column(text_column), "text_pair_column": column(text_pair_column),
                "label_column": column(label_column), "glue_task": glue_task}
    return {}


def make_task(name: str, options=None, state=None) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name](options, state)
