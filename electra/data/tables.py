"""Text in tables: parquet files, CSV/TSV files and Hugging Face ``datasets`` folders (``save_to_disk``).

Each yields ``(row_number, text, share_done)`` for one column (``text_column``), streaming with bounded memory: parquet
in record batches, CSV/TSV line by line, a ``datasets`` folder through its memory-mapped Arrow files. A row is
one document, as a JSONL record is (``corpus.CorpusReader`` splits it into lines). pyarrow and ``datasets`` are
optional; a missing one is a one-line error that names the extra to install.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from electra.errors import UserError

TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")
# Folders are searched for parquet shards; CSV and TSV files are read only when named (a corpus folder's
# CSV/TSV files are as often labels or metadata as text).
FOLDER_TABLE_SUFFIXES = (".parquet",)
_BATCH_ROWS = 1024
csv.field_size_limit(1 << 30)  # a document may be long; the default limit is 128 kB


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


def parquet_rows(path: Path, column: str) -> Iterator[tuple[int, str, float]]:
    pq = _need("pyarrow.parquet", "parquet", "parquet files")
    try:
        table = pq.ParquetFile(path)
        names = table.schema_arrow.names
    except Exception as e:  # noqa: BLE001 -- pyarrow raises ArrowInvalid, OSError, ...
        raise UserError(f"{path}: not a readable parquet file ({str(e).splitlines()[0][:120]})") from None
    if column not in names:
        raise _columns_error(path, column, names)
    row, total = 0, max(1, table.metadata.num_rows)
    for batch in table.iter_batches(batch_size=_BATCH_ROWS, columns=[column]):
        for value in batch.column(0).to_pylist():
            row += 1
            yield row, _text(value, path, row, column), row / total


def csv_rows(path: Path, column: str, lines: Iterator[str]) -> Iterator[tuple[int, str, float]]:
    """A CSV (or, for .tsv, tab-separated) file with a header row; ``lines`` its decoded lines. (Its progress
    is the byte position of the file being read: share_done is 0.)"""
    delimiter = "\t" if path.name.lower().endswith(".tsv") else ","
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise UserError(f"{path}:1: not a readable header row ({e})") from None
    if column not in header:
        raise _columns_error(path, column, header)
    at = header.index(column)
    try:
        for values in reader:
            if not values:
                continue
            if at >= len(values):
                raise UserError(f"{path}:{reader.line_num}: {len(values)} fields, no {column!r} (field {at + 1})")
            yield reader.line_num, values[at], 0.0
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: not readable as {'TSV' if delimiter == chr(9) else 'CSV'} "
                        f"({e})") from None


def _dict_splits(path: Path) -> list[str] | None:
    """The split names of a DatasetDict folder; None for a single Dataset's folder."""
    if not (path / "dataset_dict.json").is_file():
        return None
    return json.loads((path / "dataset_dict.json").read_text()).get("splits", [])


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
    for batch in ds.iter(batch_size=_BATCH_ROWS):
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
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{path}: not a readable parquet file ({str(e).splitlines()[0][:120]})") from None
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
