"""Text in tables: parquet files, CSV/TSV files and Hugging Face ``datasets`` folders (``save_to_disk``).

Each yields ``(row_number, text, share_done)`` for one column (``text_column``), streaming with bounded memory: parquet
in record batches, CSV/TSV line by line, a ``datasets`` folder through its memory-mapped Arrow files. A row is
one document, as a JSONL record is (``corpus.CorpusReader`` splits it into lines). pyarrow and ``datasets`` are
optional; a missing one is a one-line error that names the extra to install.

CSV dialect: one policy for the corpus reader and the fine-tuning task reader (``CSV_DIALECT``, ``csv_reader``):
standard CSV (RFC 4180: a field may be quoted, a quote inside a quoted field is written twice) read with
``strict=True``, so that a quote that is never closed, or text after a closing quote, is an error naming the
file and the line of that quote instead of silently swallowing the rest of the file into one field. A corpus
``.tsv`` is read with the same dialect and a tab as the delimiter, so that a document may hold several lines
(a fine-tuning ``.tsv`` is GLUE's format instead: a row is a line cut at its tabs).

A damaged file (a parquet data page that does not decode, a malformed ``dataset_dict.json``) is a one-line
UserError naming it; only the exceptions pyarrow, json and ``datasets`` raise for bad content are caught.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable, Iterator

from electra.errors import UserError

TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")
# Folders are searched for parquet shards; CSV and TSV files are read only when named (a corpus folder's
# CSV/TSV files are as often labels or metadata as text).
FOLDER_TABLE_SUFFIXES = (".parquet",)
_BATCH_ROWS = 1024
csv.field_size_limit(1 << 30)  # a document may be long; the default limit is 128 kB
# The one CSV dialect policy (see the module docstring); electra/data/readers.py reads task CSV files with it.
CSV_DIALECT = {"quotechar": '"', "doublequote": True, "strict": True}


def csv_reader(lines: Iterable[str], delimiter: str = ","):
    """``csv.reader`` with ``CSV_DIALECT``; ``lines`` each end with their newline (as a file's lines do)."""
    return csv.reader(lines, delimiter=delimiter, **CSV_DIALECT)


def unclosed_quote_line(lines: list[str], first_line: int, delimiter: str = ",") -> int:
    """The line number of the quote that opens the field left unclosed in a record: ``lines`` are the record's
    lines (each ending with its newline), the first of them line ``first_line`` of its file."""
    opened, in_quotes = first_line, False
    for lineno, line in enumerate(lines, first_line):
        i, n = 0, len(line)
        while i < n:
            if in_quotes:
                j = line.find('"', i)
                if j < 0:
                    break  # the field goes on at the next line
                if line.startswith('"', j + 1):
                    i = j + 2  # a doubled quote: a quote character inside the field
                    continue
                in_quotes, i = False, j + 1
            elif line[i] == '"':  # a quote at the start of a field opens a quoted field
                in_quotes, opened, i = True, lineno, i + 1
                continue
            j = line.find(delimiter, i)  # the rest of an unquoted (or closed) field
            if j < 0:
                break
            i = j + 1
    return opened


def is_datasets_folder(path: Path) -> bool:
    """A folder written by ``datasets.Dataset.save_to_disk`` (or ``DatasetDict.save_to_disk``)."""
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def _columns_error(path: Path, column: str, columns: list[str]) -> UserError:
    shown = ", ".join(map(str, columns)) or "none"
    return UserError(f"{path}: no column {column!r}; its columns are {shown}; pass --text-column NAME")


def _need(module: str, extra: str, what: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise UserError(f"reading {what} needs {module.split('.')[0]}: pip install 'electra[{extra}]' "
                        f"(or pip install {module.split('.')[0]})") from None


def _text(value, path: Path, row: int, column: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserError(f"{path}: row {row}: column {column!r} holds {type(value).__name__}, not text; "
                        f"pass --text-column NAME for the text column")
    return value


def _arrow_errors() -> tuple[type[BaseException], ...]:
    """What pyarrow raises for a file it cannot read: ArrowInvalid and the other ArrowExceptions, OSError (a page
    header or compressed data that does not decode) and, for a string column, UnicodeDecodeError."""
    import pyarrow

    return pyarrow.ArrowException, OSError, UnicodeDecodeError


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:120]


def parquet_rows(path: Path, column: str) -> Iterator[tuple[int, str, float]]:
    pq = _need("pyarrow.parquet", "parquet", "parquet files")
    damaged = _arrow_errors()
    try:
        table = pq.ParquetFile(path)
        names = table.schema_arrow.names
    except damaged as e:
        raise UserError(f"{path}: not a readable parquet file ({_first_line(e)})") from None
    if column not in names:
        raise _columns_error(path, column, names)
    row, total = 0, max(1, table.metadata.num_rows)
    batches = table.iter_batches(batch_size=_BATCH_ROWS, columns=[column])
    while True:
        try:  # a data page is decoded here: a damaged one (with an intact footer) fails only now
            batch = next(batches, None)
            values = None if batch is None else batch.column(0).to_pylist()
        except damaged as e:
            raise UserError(f"{path}: a damaged parquet file: rows after {row} cannot be read ({_first_line(e)}); "
                            f"write the file again or leave it out") from None
        if values is None:
            return
        for value in values:
            row += 1
            yield row, _text(value, path, row, column), row / total


def csv_rows(path: Path, column: str, lines: Iterator[str]) -> Iterator[tuple[int, str, float]]:
    """A CSV (or, for .tsv, tab-separated) file with a header row, read with ``CSV_DIALECT``; ``lines`` its decoded
    lines, each ending with a newline. (Its progress is the byte position of the file being read: share_done is
    0.)"""
    delimiter = "\t" if path.name.lower().endswith(".tsv") else ","
    kind = "TSV" if delimiter == "\t" else "CSV"
    record: list[str] = []  # the lines of the record being read: where a quote left open began

    def remembered(lines: Iterator[str]) -> Iterator[str]:
        for line in lines:
            record.append(line)
            yield line

    reader = csv_reader(remembered(lines), delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise _csv_error(path, kind, e, reader.line_num, record, delimiter) from None
    if column not in header:
        raise _columns_error(path, column, header)
    at = header.index(column)
    try:
        while True:
            record.clear()
            values = next(reader, None)
            if values is None:
                return
            if not values:
                continue
            if at >= len(values):
                raise UserError(f"{path}:{reader.line_num}: {len(values)} fields, no {column!r} (field {at + 1})")
            yield reader.line_num, values[at], 0.0
    except csv.Error as e:
        raise _csv_error(path, kind, e, reader.line_num, record, delimiter) from None


def _csv_error(path: Path, kind: str, e: csv.Error, line_num: int, record: list[str], delimiter: str) -> UserError:
    if "unexpected end of data" in str(e):  # strict: the file ended inside a quoted field
        line = unclosed_quote_line(record, line_num - len(record) + 1, delimiter)
        return UserError(f"{path}:{line}: not readable as {kind}: the quote that opens a field on this line is never "
                         f"closed (it would swallow the rest of the file); close it, or write a quote inside a "
                         f"quoted field twice")
    return UserError(f"{path}:{line_num}: not readable as {kind} ({e}); check the quotes on this line (a quoted "
                     f"field must end at its closing quote; a quote inside it is written twice)")


def _dict_splits(path: Path) -> list[str] | None:
    """The split names of a DatasetDict folder; None for a single Dataset's folder."""
    index = path / "dataset_dict.json"
    if not index.is_file():
        return None
    try:
        value = json.loads(index.read_bytes())
    except OSError as e:
        raise UserError(f"{index}: cannot read ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, too deep
        why = "nested too deeply" if isinstance(e, RecursionError) else _first_line(e)
        raise UserError(f"{index}: not valid JSON ({why}); the datasets folder is damaged: save it again "
                        f"(DatasetDict.save_to_disk)") from None
    splits = value.get("splits", []) if isinstance(value, dict) else None
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise UserError(f'{index}: expected {{"splits": [names]}}; the datasets folder is damaged: save it again '
                        f"(DatasetDict.save_to_disk)")
    return splits


def _load_dataset(path: Path):
    """One Dataset's ``save_to_disk`` folder, memory-mapped; an unreadable one is a one-line UserError."""
    datasets = _need("datasets", "datasets", "a datasets folder")
    try:
        return datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 -- datasets raises FileNotFoundError, ValueError, ...
        raise UserError(f"{path}: not a readable datasets folder ({str(e).splitlines()[0][:120]})") from None


def datasets_rows(path: Path, column: str) -> Iterator[tuple[int, str, float]]:
    """A ``save_to_disk`` folder; of a DatasetDict, its ``train`` split."""
    splits = _dict_splits(path)
    if splits is not None:
        if "train" not in splits:
            raise UserError(f"{path}: a DatasetDict without a train split (it has {', '.join(splits) or 'none'}); "
                            f"give the split's folder, e.g. {path / (splits[0] if splits else 'SPLIT')}")
        path = path / "train"
    ds = _load_dataset(path)
    if column not in ds.column_names:
        raise _columns_error(path, column, ds.column_names)
    ds = ds.select_columns([column])  # memory-mapped Arrow: iterating keeps memory bounded
    row, total = 0, max(1, ds.num_rows)
    batches, damaged = iter(ds.iter(batch_size=_BATCH_ROWS)), _arrow_errors()
    while True:
        try:
            batch = next(batches, None)
        except damaged as e:
            raise UserError(f"{path}: a damaged datasets folder: rows after {row} cannot be read ({_first_line(e)}); "
                            f"save it again (save_to_disk)") from None
        if batch is None:
            return
        for value in batch[column]:
            row += 1
            yield row, _text(value, path, row, column), row / total


def is_table(path: Path) -> bool:
    """A parquet file or a datasets folder: read by rows of named columns."""
    path = Path(path)
    return is_datasets_folder(path) or path.name.lower().endswith(".parquet")


def table_records(path: Path) -> list[tuple[int, dict]]:
    """Every row of a (small: a task's) parquet file or datasets folder as (row number from 1, {column: value}).
    A datasets ``ClassLabel`` column (or a sequence of them, as NER tags are) gives its label names, not ints.
    A DatasetDict folder is refused with its splits: fine-tuning reads one split a file."""
    path = Path(path)
    if path.is_dir():
        splits = _dict_splits(path)
        if splits is not None:
            shown = ", ".join(str(path / split) for split in splits)
            raise UserError(f"{path}: a DatasetDict; give one split's folder ({shown})")
        ds = _load_dataset(path)
        names = {col: _label_names(feature) for col, feature in ds.features.items()}
        rows = ds.to_list()
    else:
        pq = _need("pyarrow.parquet", "parquet", "parquet files")
        try:
            rows = pq.read_table(path).to_pylist()
        except _arrow_errors() as e:
            raise UserError(f"{path}: not a readable parquet file ({_first_line(e)})") from None
        names = {}
    for row in rows:
        for col, labels in names.items():
            if labels is not None and row.get(col) is not None:
                value = row[col]
                row[col] = [labels[v] for v in value] if isinstance(value, list) else labels[value]
    return list(enumerate(rows, 1))


def _label_names(feature) -> list[str] | None:
    """The names of a ClassLabel feature, or of one inside a Sequence/list feature; else None."""
    inner = getattr(feature, "feature", feature)  # Sequence(ClassLabel) / List(ClassLabel)
    names = getattr(inner, "names", None)
    return list(names) if isinstance(names, list) else None
