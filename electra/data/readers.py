"""Readers for fine-tuning data: classification, tagging (CoNLL), QA (SQuAD) and prediction inputs.

Readers return the dataclasses of ``electra.data.examples``, each with the "path:line" it came
from. Every problem the user can fix (a wrong column count, a missing label, non-UTF-8 bytes, bad
JSON, a broken .gz) raises ``UserError``: one line naming ``path:line`` (1-based) and what to do.

Classification files, by extension (each may add ``.gz``): ``.tsv``/``.txt`` tab-separated and read
with quoting disabled as the GLUE processors do (``csv.QUOTE_NONE``: every tab separates, quotes
are plain characters); ``.csv`` standard CSV with a header row; ``.jsonl`` one object per line.
Blank lines are skipped; every row must have as many columns as the first line.

GLUE layouts, detected from the header line (0-based columns; "-" = absent)::

    task  train/dev header (column: name)                        text  pair  label         test header
    cola  none: 0 source, 1 label, 2 original marker (*), 3 text  3     -     1             index sentence
    sst2  sentence label                                          0     -     1             index sentence
    mrpc  Quality, #1 ID, #2 ID, #1 String, #2 String             3     4     0 (Quality)   index #1 ID #2 ID #1 String #2 String
    qqp   id qid1 qid2 question1 question2 is_duplicate           3     4     5             id question1 question2
    mnli  index promptID pairID genre sentence1_binary_parse      8     9     last: 11 train the first 10 columns
          sentence2_binary_parse sentence1_parse sentence2_parse              15 dev (label1..label5 before it)
          sentence1 sentence2 label1 [label2..label5] gold_label              (dev_matched, dev_mismatched alike)
    qnli  index question sentence label                           1     2     3             index question sentence
    rte   index sentence1 sentence2 label                         1     2     3             index sentence1 sentence2
    wnli  index sentence1 sentence2 label  (same as rte)          1     2     3             index sentence1 sentence2
    stsb  index genre filename year old_index source1 source2     7     8     9 (score,     the first 9 columns
          sentence1 sentence2 score                                           a float)

The id column (``index`` / ``id``) becomes ``guid`` when present, else the line number does. A
header shared by several tasks (rte/wnli; the sst2/cola test header) reads the same either way.
``glue_task`` checks that the header is that task's; CoLA train/dev files have no header and are
recognised without ``glue_task`` too (4 columns, the second one 0 or 1).

Columns: ``text_column``/``text_pair_column``/``label_column`` are header names or 0-based integer
indices (negative counts from the end; digit strings count as indices unless the header has a
column of that name) and override the detected ones one by one. Without them a file must be a
GLUE layout or have obvious names: text ``text``/``sentence``/``sentence1``, pair
``text_pair``/``sentence2``, label ``label``, id ``id``/``idx``/``index``/``guid``. A TSV whose
first line is no GLUE header has a header unless every given column is an integer index. CSV
always has a header; JSONL columns are field names.

Labels: strings with surrounding spaces removed; a JSON number (JSONL, tables) becomes its canonical text,
so ``1`` and ``1.0`` are one label "1" (``_label_text``). ``info["is_regression"]`` is True for STS-B, and
otherwise guessed: every label is a finite number and not all of them are integers (so 0/1
labels are classes). Labels are floats exactly when ``is_regression`` is True for that file.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from electra.data.examples import ClassificationExample, QAAnswer, QAExample, TaggingExample
from electra.data.tables import csv_reader, is_table, table_records
from electra.errors import UserError

Column = int | str | None


@dataclass(frozen=True)
class GlueTask:
    text: str                                # column names; positions follow from the layout
    pair: str | None
    label: str
    id: str
    layouts: tuple[tuple[str, ...], ...]     # headers: train/dev first, then test (no label)
    headerless: tuple[str, ...] | None = None  # CoLA train/dev have no header line
    regression: bool = False


_MNLI = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
         "sentence1_parse", "sentence2_parse", "sentence1", "sentence2")
_STSB = ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2")
_MRPC = ("#1 ID", "#2 ID", "#1 String", "#2 String")
_NLI = GlueTask("sentence1", "sentence2", "label", "index",
                (("index", "sentence1", "sentence2", "label"), ("index", "sentence1", "sentence2")))
GLUE_TASKS = {
    "cola": GlueTask("sentence", None, "label", "index", (("index", "sentence"),),
                     headerless=("source", "label", "original_label", "sentence")),
    "sst2": GlueTask("sentence", None, "label", "index", (("sentence", "label"), ("index", "sentence"))),
    "mrpc": GlueTask("#1 String", "#2 String", "Quality", "index", (("Quality",) + _MRPC, ("index",) + _MRPC)),
    "qqp": GlueTask("question1", "question2", "is_duplicate", "id",
                    (("id", "qid1", "qid2", "question1", "question2", "is_duplicate"), ("id", "question1", "question2"))),
    "mnli": GlueTask("sentence1", "sentence2", "gold_label", "index",
                     (_MNLI + ("label1", "gold_label"),
                      _MNLI + ("label1", "label2", "label3", "label4", "label5", "gold_label"), _MNLI)),
    "qnli": GlueTask("question", "sentence", "label", "index",
                     (("index", "question", "sentence", "label"), ("index", "question", "sentence"))),
    "rte": _NLI,
    "wnli": _NLI,
    "stsb": GlueTask("sentence1", "sentence2", "score", "index", (_STSB + ("score",), _STSB), regression=True),
}
_OBVIOUS = {"text": ("text", "sentence", "sentence1"), "text_pair": ("text_pair", "sentence2"),
            "label": ("label",), "id": ("id", "idx", "index", "guid")}
_FLAGS = {"text": "--text-column", "text_pair": "--text-pair-column", "label": "--label-column"}


# --------------------------------------------------------------------------- reading files

def _clip(value, n: int = 60) -> str:
    """User content for a message: quoted, escaped (so always one line) and shortened."""
    s = str(value)
    return repr(s[:n] + "...") if len(s) > n else repr(s)


def _names(items) -> str:
    items = [str(i) for i in items]
    shown = ", ".join(_clip(i, 30) for i in items[:20])
    return shown + (f", ... ({len(items)} in all)" if len(items) > 20 else "")


def _format(path: Path, formats: dict[str, str]) -> str:
    name = path.name.lower().removesuffix(".gz")
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    if ext not in formats:
        raise UserError(f"{path}: unknown file type; give a file ending in "
                        f"{', '.join('.' + e for e in formats)} (optionally .gz)")
    return formats[ext]


def _read_lines(path: Path) -> list[str]:
    """The file's lines without line terminators; line i (1-based) is ``lines[i - 1]``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder; give a file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
            raise UserError(f"{path}: cannot decompress ({_clip(e, 80)}); is it a complete gzip file?") from None
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (it contains NUL bytes: "
                        "a binary or UTF-16 file?); give plain UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, column = data.count(b"\n", 0, e.start) + 1, e.start - data.rfind(b"\n", 0, e.start)
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); "
                        "convert the file to UTF-8 (e.g. with iconv)") from None
    lines = text.removeprefix("\ufeff").split("\n")  # a byte-order mark is not text
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _json_records(path: Path, lines: list[str], example: str) -> list[tuple[int, dict]]:
    records = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            raise UserError(f"{path}:{lineno}: not valid JSON ({_clip(getattr(e, 'msg', e), 80)}); "
                            f"each line must be one JSON object like {example}") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{lineno}: not a JSON object; each line must be one like {example}")
        records.append((lineno, record))
    return records


# --------------------------------------------------------------------------- classification

def read_classification(path: str | Path, *, text_column: Column = None, text_pair_column: Column = None,
                        label_column: Column = None, glue_task: str | None = None,
                        has_labels: bool = True) -> tuple[list[ClassificationExample], dict]:
    """Reads a classification or regression file (see the module docstring for formats and layouts).

    Returns the examples and an info dict: ``format`` (tsv/csv/jsonl), ``layout`` ("glue:<task>",
    e.g. "glue:rte/wnli", or "columns"), ``glue_task`` (None unless known), ``header`` (list of
    column names or None), ``columns`` (text/text_pair/label: names with a header, else indices;
    None where unused), ``is_regression`` and ``labels`` (sorted distinct class labels).
    With ``has_labels=False`` every label is None, whatever the file holds.
    """
    path = Path(path)
    fmt = "table" if is_table(path) else _format(path, {"tsv": "tsv", "txt": "tsv", "csv": "csv", "jsonl": "jsonl",
                                                        "parquet": "parquet"})
    if glue_task is not None and glue_task not in GLUE_TASKS:
        raise UserError(f"{path}: unknown GLUE task {_clip(glue_task)}; choose one of {', '.join(GLUE_TASKS)}")
    if glue_task is not None and fmt != "tsv":
        raise UserError(f"{path}: a GLUE task needs its .tsv file; for a .{fmt} file name the columns instead")
    specs = {"text": text_column, "text_pair": text_pair_column, "label": label_column}
    if fmt == "table":
        examples, info = _read_records(path, table_records(path), specs, has_labels, "table")
    elif fmt == "jsonl":
        examples, info = _read_records(path, _json_records(path, _read_lines(path), '{"text": "...", "label": "..."}'),
                                       specs, has_labels, "jsonl")
    else:
        examples, info = _read_table(path, _read_lines(path), fmt, specs, glue_task, has_labels)
    if not has_labels:
        info["columns"]["label"] = None
    info["is_regression"] = _finish_labels(examples, info.pop("regression"))
    info["labels"] = [] if info["is_regression"] else sorted({e.label for e in examples if e.label is not None})
    return examples, info


def _is_index(spec: Column, header: list[str] | None) -> bool:
    return isinstance(spec, int) or (isinstance(spec, str) and re.fullmatch(r"-?\d+", spec) is not None
                                     and (header is None or spec not in header))


def _resolve(spec: Column, header: list[str] | None, ncols: int, path: Path, flag: str) -> int:
    if _is_index(spec, header):
        i = int(spec)
        if not -ncols <= i < ncols:
            raise UserError(f"{path}:1: {flag} {i} is out of range: the file has {ncols} columns (0 to {ncols - 1})")
        return i % ncols
    if header is None:
        raise UserError(f"{path}:1: {flag} {_clip(spec)} is a name but the file has no header; give a 0-based index")
    if spec not in header:
        raise UserError(f"{path}:1: {flag} {_clip(spec)} is not a column of the header ({_names(header)}); "
                        "give one of those names or a 0-based index")
    return header.index(spec)


def _glue_layout(path: Path, first: list[str], glue_task: str | None, names_given: bool):
    """(task names, column names, has header) when the first row is a GLUE header or CoLA row, else None."""
    row = tuple(first)
    tasks = [name for name, task in GLUE_TASKS.items() if row in task.layouts]
    if glue_task is not None:
        task = GLUE_TASKS[glue_task]
        if glue_task in tasks:
            return [glue_task], row, True
        if task.headerless and len(first) == len(task.headerless):
            return [glue_task], task.headerless, False
        expected = " or ".join(_clip("\t".join(h), 200) for h in task.layouts)
        found = f"the header of {'/'.join(tasks)}" if tasks else _clip("\t".join(first))
        raise UserError(f"{path}:1: not a GLUE {glue_task} file: expected the header {expected}"
                        f"{' or 4 columns without a header' if task.headerless else ''}, found {found}; "
                        "give the right file or --glue-task, or name the columns instead")
    if tasks:
        return tasks, row, True
    if not names_given and len(first) == 4 and first[1].strip() in ("0", "1"):
        return ["cola"], GLUE_TASKS["cola"].headerless, False  # CoLA train/dev: source, label, marker, sentence
    return None


def _table_rows(path: Path, lines: list[str], fmt: str) -> list[tuple[int, list[str]]]:
    if fmt == "tsv":
        return [(lineno, line.split("\t")) for lineno, line in enumerate(lines, 1) if line.strip()]
    rows, start = [], 1
    reader = csv_reader(line + "\n" for line in lines)
    try:
        for row in reader:
            if any(field.strip() for field in row):
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as e:
        raise UserError(f"{path}:{start}: malformed CSV ({_clip(e, 80)}); check the quotes in this record "
                        "(a quote inside a field is written twice)") from None
    return rows


def _read_table(path: Path, lines: list[str], fmt: str, specs: dict, glue_task: str | None, has_labels: bool):
    rows = _table_rows(path, lines, fmt)
    if not rows:
        raise UserError(f"{path}: the file is empty; give a {fmt.upper()} file with one example per line")
    first = [name.strip() for name in rows[0][1]]
    given = {key: spec for key, spec in specs.items() if spec is not None}
    names_given = any(not _is_index(spec, first) for spec in given.values())
    glue = _glue_layout(path, first, glue_task, names_given) if fmt == "tsv" else None
    cols: dict[str, int | None] = dict.fromkeys(("text", "text_pair", "label", "id"))
    regression = None
    if glue is not None:
        tasks, names, has_header = glue
        task = GLUE_TASKS[tasks[0]]
        for key, name in zip(cols, (task.text, task.pair, task.label, task.id)):
            cols[key] = names.index(name) if name in names else None
        layout, regression = "glue:" + "/".join(tasks), task.regression or None
        glue_name = tasks[0] if len(tasks) == 1 else None
    else:
        has_header = fmt == "csv" or not given or names_given
        if has_header:
            for key, options in _OBVIOUS.items():
                cols[key] = next((first.index(n) for n in options if n in first), None)
        layout, glue_name = "columns", None
    header = first if has_header else None
    ncols = len(first)
    for key, spec in given.items():
        cols[key] = _resolve(spec, header, ncols, path, _FLAGS[key])
    shown = _clip("\t".join(first) if fmt == "tsv" else ",".join(first), 120)
    if cols["text"] is None:
        raise UserError(f"{path}:1: cannot tell which column holds the text (first line {shown}); "
                        "give --text-column (a header name or 0-based index) or --glue-task")
    if has_labels and cols["label"] is None:
        raise UserError(f"{path}:1: no label column (first line {shown}); give --label-column, "
                        "or read the file as unlabelled (test) data")
    data = rows[1:] if has_header else rows
    if not data:
        raise UserError(f"{path}: no examples after the header line; give a file with at least one example")
    kind = "tab-separated" if fmt == "tsv" else "comma-separated"
    hint = " (a tab inside a text?)" if fmt == "tsv" else " (an unquoted comma or quote?)"
    examples = []
    for lineno, row in data:
        if len(row) != ncols:
            raise UserError(f"{path}:{lineno}: expected {ncols} {kind} columns, found {len(row)}{hint}")
        label = None
        if has_labels:
            label = row[cols["label"]].strip()
            if not label:
                raise UserError(f"{path}:{lineno}: the label (column {cols['label']}) is empty; "
                                "every row needs a label")
        pair = row[cols["text_pair"]] if cols["text_pair"] is not None else None
        guid = row[cols["id"]].strip() if cols["id"] is not None else str(lineno)
        examples.append(ClassificationExample(row[cols["text"]], pair, label, guid, f"{path}:{lineno}"))
    used = {key: (None if cols[key] is None else header[cols[key]] if header else cols[key]) for key in _FLAGS}
    return examples, {"format": fmt, "layout": layout, "glue_task": glue_name, "header": header,
                      "columns": used, "regression": regression}


def _read_records(path: Path, records: list[tuple[int, dict]], specs: dict, has_labels: bool, fmt: str):
    """Named fields: JSONL lines, or the rows of a parquet file or datasets folder (``fmt`` "table", rows
    numbered from 1 where a JSONL line number would be)."""
    if not records:
        raise UserError(f'{path}: the file is empty; give one JSON object like {{"text": "...", "label": "..."}} a line'
                        if fmt == "jsonl" else f"{path}: the table has no rows")
    for key, spec in specs.items():
        if isinstance(spec, int):
            named = "JSONL fields" if fmt == "jsonl" else "columns"
            raise UserError(f"{path}: {_FLAGS[key]} {spec} is an index, but {named} have names; give a name")
    keys = dict.fromkeys(key for _, record in records for key in record)  # every field of any line
    fields = {key: specs.get(key) or next((n for n in options if n in keys), None) for key, options in _OBVIOUS.items()}
    if fields["text"] is None:
        raise UserError(f"{path}:{records[0][0]}: no \"text\" or \"sentence\" field; give --text-column "
                        f"(fields: {_names(keys)})")
    if has_labels and fields["label"] is None:
        raise UserError(f"{path}:{records[0][0]}: no \"label\" field; give --label-column (fields: {_names(keys)}), "
                        "or read the file as unlabelled (test) data")
    examples = []
    for lineno, record in records:
        text, pair = record.get(fields["text"]), record.get(fields["text_pair"]) if fields["text_pair"] else None
        if not isinstance(text, str):
            raise UserError(f"{path}:{lineno}: field {_clip(fields['text'])} is missing or not a string")
        if pair is not None and not isinstance(pair, str):
            raise UserError(f"{path}:{lineno}: field {_clip(fields['text_pair'])} is not a string")
        label = None
        if has_labels:
            label = record.get(fields["label"])
            if isinstance(label, bool) or not isinstance(label, (str, int, float)) or not str(label).strip():
                raise UserError(f"{path}:{lineno}: field {_clip(fields['label'])} is missing or not a string "
                                "or number; every line needs a label")
            label = _label_text(label, path, lineno)
        guid = record.get(fields["id"]) if fields["id"] else None
        guid = str(guid) if isinstance(guid, (str, int)) and not isinstance(guid, bool) else str(lineno)
        examples.append(ClassificationExample(text, pair, label, guid, f"{path}:{lineno}"))
    return examples, {"format": fmt, "layout": "columns", "glue_task": None, "header": None,
                      "columns": {key: fields[key] for key in _FLAGS}, "regression": None}


def _label_text(label: str | int | float, path: Path, lineno: int) -> str:
    """A JSONL (or table) label as the text every label is compared by.

    A JSON number is a value, not a spelling: ``1``, ``1.0`` and ``1e0`` are the same number (in JSON, in
    Python and to the writer that produced them: pandas writes an int column with a gap as floats), so a number
    becomes its canonical text, an integral one the integer's ("1"), any other Python's shortest repr ("0.5").
    Otherwise ``1`` and ``1.0`` would be two classes, and a dev file written by another tool would hold labels
    unknown to the model. Text labels stay as written (surrounding spaces removed): "1.0" in quotes, or in a
    TSV, is a name the user chose. NaN and infinities are no label.
    """
    if isinstance(label, str):
        return label.strip()
    if isinstance(label, float):
        if not math.isfinite(label):
            raise UserError(f"{path}:{lineno}: label {label} is not a finite number; give every line a label")
        if label.is_integer():
            return str(int(label))
    return str(label)


def _number(label: str) -> float | None:
    try:
        return value if math.isfinite(value := float(label)) else None
    except ValueError:
        return None


def _finish_labels(examples: list[ClassificationExample], regression: bool | None) -> bool:
    """Turns labels into floats for regression (known, or guessed when None); returns is_regression."""
    labelled = [e for e in examples if e.label is not None]
    values = [_number(e.label) for e in labelled]
    if regression is None:
        regression = bool(values) and all(v is not None for v in values) and not all(v.is_integer() for v in values)
    if regression:
        for example, value in zip(labelled, values):
            if value is None:
                raise UserError(f"{example.source}: label {_clip(example.label)} is not a number; "
                                "a regression task needs numeric scores")
            example.label = value
    return regression


def check_labels(train_labels: list[str], examples, path: str | Path) -> None:
    """Raises UserError at the first example (classification or tagging) with a label not seen in training."""
    known = {str(label) for label in train_labels}
    for example in examples:
        labels = example.tags if isinstance(example, TaggingExample) else [example.label]
        for label in labels or ():
            if label is None or isinstance(label, float):  # unlabelled, or regression
                continue
            if label not in known:
                raise UserError(f"{example.source or path}: label {_clip(label)} does not occur in the training "
                                f"data (known labels: {_names(sorted(known))}); fix it or add examples of it to "
                                "the training file")


# --------------------------------------------------------------------------- tagging (CoNLL)

def read_conll(path: str | Path, *, token_column: int | str | None = None, tag_column: int | str | None = None,
               has_labels: bool = True) -> list[TaggingExample]:
    """Reads CoNLL-style tagging data: one token a line, a blank line between sentences (columns default to
    0 and -1); or a parquet file or datasets folder with a list of tokens and a list of tags a row (columns by
    name, default ``tokens``/``words`` and ``tags``/``ner_tags``/``pos_tags``/``labels``).

    A line holding a tab is split on tabs (so tokens may contain spaces), any other on whitespace.
    Columns are 0-based, negative ones count from the end. ``-DOCSTART-`` lines end a sentence and
    are skipped. A line starting with "# " before a sentence's first token is a comment (as in
    CoNLL-U) unless it is split like most token lines (the same separator and number of columns):
    then "#" is a token, as in "# NN" in a space-separated file.
    """
    path = Path(path)
    if is_table(path):
        return _tagging_records(path, table_records(path), token_column, tag_column, has_labels)
    token_column = 0 if token_column is None else token_column
    tag_column = -1 if tag_column is None else tag_column
    for name, value in (("token_column", token_column), ("tag_column", tag_column)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise UserError(f"{path}: {name} {_clip(value)} must be a 0-based column index (an integer)")
    if has_labels and token_column == tag_column:
        raise UserError(f"{path}: token_column and tag_column are both {tag_column}; give the tag's column")
    lines = _read_lines(path)
    rows = [None if not line.strip() else [f.strip() for f in line.rstrip().split("\t")] if "\t" in line.rstrip()
            else line.split() for line in lines]

    def shape(line, row):  # (tab-separated?, columns)
        return "\t" in line.rstrip(), len(row)

    shapes = Counter(shape(line, row) for line, row in zip(lines, rows) if row and not line.startswith("#"))
    token_shape = shapes.most_common(1)[0][0] if shapes else None
    need = max(token_column + 1 if token_column >= 0 else -token_column,
               (tag_column + 1 if tag_column >= 0 else -tag_column) if has_labels else 1, 2 if has_labels else 1)
    examples, words, tags, start = [], [], [], 0

    def flush():
        if words:
            examples.append(TaggingExample(list(words), list(tags) if has_labels else None, f"{path}:{start}"))
        words.clear()
        tags.clear()

    for lineno, (line, row) in enumerate(zip(lines, rows), 1):
        if row is None or row[0] == "-DOCSTART-":
            flush()
            continue
        if not words and line.startswith("# ") and shape(line, row) != token_shape:
            continue  # a comment
        t, g = (i % len(row) if -len(row) <= i < len(row) else None for i in (token_column, tag_column))
        if t is None or (has_labels and g in (None, t)):
            what = f"token in column {token_column}" + (f", tag in column {tag_column}" if has_labels else "")
            raise UserError(f"{path}:{lineno}: expected at least {need} columns ({what}), found {len(row)}: "
                            f"{_clip(line)}; sentences are separated by blank lines")
        if not row[t] or (has_labels and not row[g]):
            raise UserError(f"{path}:{lineno}: empty {'token' if not row[t] else 'tag'} in {_clip(line)}; "
                            "remove the stray tab")
        if not words:
            start = lineno
        words.append(row[t])
        if has_labels:
            tags.append(row[g])
    flush()
    if not examples:
        raise UserError(f"{path}: no sentences found; give one token per line with its tag, "
                        "and a blank line between sentences")
    return examples


_TOKEN_COLUMNS, _TAG_COLUMNS = ("tokens", "words"), ("tags", "ner_tags", "pos_tags", "labels")


def _tagging_records(path: Path, records: list[tuple[int, dict]], token_column, tag_column,
                     has_labels: bool) -> list[TaggingExample]:
    """Rows of a token list and a tag list (datasets' conll2003 layout: ``tokens``, ``ner_tags``)."""
    if not records:
        raise UserError(f"{path}: the table has no rows")
    columns = list(records[0][1])
    for name, value in (("--token-column", token_column), ("--tag-column", tag_column)):
        if value is not None and not isinstance(value, str):
            raise UserError(f"{path}: {name} {_clip(value)} is an index, but a table's columns have names "
                            f"({_names(columns)}); give a name")
    token_column = token_column or next((c for c in _TOKEN_COLUMNS if c in columns), None)
    tag_column = tag_column or next((c for c in _TAG_COLUMNS if c in columns), None)
    for name, value in (("--token-column", token_column), ("--tag-column", tag_column if has_labels else "")):
        if value is None or (value and value not in columns):
            raise UserError(f"{path}: no {'token' if 'token' in name else 'tag'} column "
                            f"{'found' if value is None else _clip(value)}; give {name} (columns: {_names(columns)})")
    examples = []
    for row, record in records:
        words, tags = record.get(token_column), record.get(tag_column) if has_labels else None
        if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
            raise UserError(f"{path}: row {row}: {token_column!r} is not a list of non-empty strings")
        if has_labels:
            if not isinstance(tags, list) or len(tags) != len(words) or any(t is None or t == "" for t in tags):
                raise UserError(f"{path}: row {row}: {tag_column!r} must be a list of one tag per token "
                                f"({len(words)} tokens)")
            tags = [str(t) for t in tags]
        if words:
            examples.append(TaggingExample(list(words), tags, f"{path}:{row}"))
    if not examples:
        raise UserError(f"{path}: no sentences found (every row's token list is empty)")
    return examples


# --------------------------------------------------------------------------- QA (SQuAD)

def _json_type(value) -> str:
    kinds = ((bool, "true/false"), (dict, "an object"), (list, "a list"), (str, "a string"), ((int, float), "a number"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def _object(value, where: str, path: Path) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{path}: {where}: expected an object, found {_json_type(value)}")
    return value


def _get(obj: dict, key: str, kinds: tuple, where: str, path: Path, required: bool = True):
    if key not in obj:
        if required:
            raise UserError(f'{path}: {where}: missing "{key}"; expected SQuAD JSON (data[].paragraphs[].qas[])')
        return None
    value = obj[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(dict.fromkeys(_json_type(k()) for k in kinds))
        raise UserError(f"{path}: {where}.{key}: expected {expected}, found {_json_type(value)}")
    return value


def read_squad(path: str | Path) -> tuple[list[QAExample], str]:
    """Reads SQuAD v1.1 / v2.0 JSON: the questions and the version ("1.1", "2.0", or the file's own).

    The version is the top-level ``version`` field (a leading "v" dropped), else "2.0" when any
    question has ``is_impossible``, else "1.1". ``plausible_answers`` are ignored, and whether an
    answer occurs in its context is left to the featurizer. Every question needs ``answers`` (may be
    empty), and question ids must be unique.
    """
    path = Path(path)
    if is_table(path):
        return _squad_records(path, table_records(path))
    text = "\n".join(_read_lines(path))
    try:
        root = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON at column {e.colno} ({e.msg}); "
                        "give a SQuAD .json file") from None
    except (ValueError, RecursionError) as e:
        raise UserError(f"{path}: not valid JSON ({_clip(e, 80)}); give a SQuAD .json file") from None
    examples, first_seen, impossible_seen = [], {}, False
    for i, article in enumerate(_get(_object(root, "the top level", path), "data", (list,), "the top level", path)):
        article = _object(article, where := f"data[{i}]", path)
        title = _get(article, "title", (str,), where, path, required=False) or ""
        for j, paragraph in enumerate(_get(article, "paragraphs", (list,), where, path)):
            paragraph = _object(paragraph, where := f"data[{i}].paragraphs[{j}]", path)
            context = _get(paragraph, "context", (str,), where, path)
            for k, qa in enumerate(_get(paragraph, "qas", (list,), where, path)):
                qa = _object(qa, where := f"data[{i}].paragraphs[{j}].qas[{k}]", path)
                qid = str(_get(qa, "id", (str, int), where, path))
                if qid in first_seen:
                    raise UserError(f"{path}: {where}: duplicate id {_clip(qid)} (first at {first_seen[qid]}); "
                                    "question ids must be unique")
                first_seen[qid] = where
                question = _get(qa, "question", (str,), where, path)
                impossible = _get(qa, "is_impossible", (bool,), where, path, required=False)
                impossible_seen |= impossible is not None
                answers = []
                for a, answer in enumerate(_get(qa, "answers", (list,), where, path)):
                    answer = _object(answer, at := f"{where}.answers[{a}]", path)
                    start = _get(answer, "answer_start", (int,), at, path)
                    if start < 0:
                        raise UserError(f"{path}: {at}.answer_start: {start} is negative; give a character offset")
                    answers.append(QAAnswer(_get(answer, "text", (str,), at, path), start))
                examples.append(QAExample(qid, question, context, answers, bool(impossible), title, str(path)))
    if not examples:
        raise UserError(f"{path}: no questions found; expected SQuAD JSON (data[].paragraphs[].qas[])")
    version = root.get("version")
    version = version.lstrip("vV") if isinstance(version, str) and version.strip() else None
    return examples, version or ("2.0" if impossible_seen else "1.1")


def _squad_records(path: Path, records: list[tuple[int, dict]]) -> tuple[list[QAExample], str]:
    """The datasets layout of SQuAD: ``id``, ``question``, ``context``, ``answers`` {``text``: [...],
    ``answer_start``: [...]}, ``title`` optional; no answer = unanswerable (SQuAD v2.0)."""
    examples, seen, impossible_seen = [], {}, False
    for row, r in records:
        where = f"row {row}"
        for key in ("id", "question", "context", "answers"):
            if key not in r:
                raise UserError(f"{path}: {where}: no {key!r} column; expected SQuAD's columns id, question, "
                                f"context, answers (columns: {_names(r)})")
        qid = str(r["id"])
        if qid in seen:
            raise UserError(f"{path}: {where}: duplicate id {_clip(qid)} (first at row {seen[qid]}); question ids "
                            f"must be unique")
        seen[qid] = row
        answers = r["answers"] or {}
        texts, starts = answers.get("text") or [], answers.get("answer_start") or []
        if not isinstance(r["question"], str) or not isinstance(r["context"], str) or len(texts) != len(starts):
            raise UserError(f"{path}: {where}: question and context must be text, and answers a text list with an "
                            f"answer_start each")
        if any(not isinstance(s, int) or s < 0 for s in starts):
            raise UserError(f"{path}: {where}: answers.answer_start must be character offsets (integers >= 0)")
        impossible_seen |= not texts
        examples.append(QAExample(qid, r["question"], r["context"], [QAAnswer(t, s) for t, s in zip(texts, starts)],
                                  not texts, str(r.get("title") or ""), str(path)))
    if not examples:
        raise UserError(f"{path}: the table has no rows")
    return examples, "2.0" if impossible_seen else "1.1"


# --------------------------------------------------------------------------- prediction inputs

def read_text_lines(path: str | Path) -> list[ClassificationExample]:
    """Unlabelled texts to predict on; guid is the line number (blank lines are skipped).

    ``.txt``: one text a line, or a text and its pair separated by one tab. ``.jsonl``: objects with
    a ``text`` string and an optional ``text_pair`` string (an ``id`` field becomes the guid), read
    as ``read_classification`` reads unlabelled JSONL.
    """
    path = Path(path)
    fmt = _format(path, {"txt": "txt", "jsonl": "jsonl"})
    lines = _read_lines(path)
    examples = []
    if fmt == "txt":
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) > 2:
                raise UserError(f"{path}:{lineno}: expected a text, or a text and its pair separated by one tab; "
                                f"found {len(parts)} tab-separated columns")
            examples.append(ClassificationExample(parts[0], parts[1] if len(parts) == 2 else None, None,
                                                  str(lineno), f"{path}:{lineno}"))
    else:
        examples = _read_records(path, _json_records(path, lines, '{"text": "..."}'), dict.fromkeys(_FLAGS),
                                 has_labels=False, fmt="jsonl")[0]
    if not examples:
        raise UserError(f"{path}: no texts found; give one text a line")
    return examples
