"""Reading a raw corpus: text and JSONL files (gzipped or not), parquet, CSV/TSV and `datasets` folders,
as documents of lines, streamed with bounded memory; a broken line is named with its file and number."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from electra.data.tables import (FOLDER_TABLE_SUFFIXES, TABLE_SUFFIXES, csv_rows, datasets_rows, is_datasets_folder,
                                 parquet_rows)
from electra.errors import UserError

CORPUS_SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz")


def find_corpus_files(inputs: list | str | Path) -> list[Path]:
    """Corpus sources from files and folders, in the order given: text files (see CORPUS_SUFFIXES), parquet,
    CSV and TSV files, and ``datasets`` folders (``save_to_disk``). Other folders are searched recursively
    (sorted) for text and parquet files; CSV/TSV files are read only when named."""
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not inputs:
        raise UserError(f"no corpus given; pass {_KINDS}")
    files, seen = [], set()
    for item in map(Path, inputs):
        if is_datasets_folder(item):
            found = [item]
        elif item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith(".")
                           and p.name.lower().endswith(CORPUS_SUFFIXES + FOLDER_TABLE_SUFFIXES))
        elif item.is_file():
            if not item.name.lower().endswith(CORPUS_SUFFIXES + TABLE_SUFFIXES):
                raise UserError(f"{item}: not a corpus file; give {_KINDS}")
            found = [item]
        else:
            raise UserError(f"{item}: no such file or folder")
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                files.append(path)
    if not files:
        raise UserError(f"{' '.join(map(str, inputs))}: no corpus files found; give {_KINDS}")
    return files


_KINDS = ("files or folders of .txt, .txt.gz, .jsonl, .jsonl.gz or .parquet, .csv or .tsv files, or a datasets "
          "folder (save_to_disk)")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.is_file() else 0


class CorpusReader:
    """Iterates a corpus as sentences (str) with ``None`` at the end of each document.

    Counts lines (non-empty sentences) and documents as it goes, and reports how many bytes of
    the files on disk it has consumed (for a progress bar; compressed bytes for .gz files).
    """

    def __init__(self, files: Iterable[str | Path], text_column: str = "text"):
        self.files = [Path(f) for f in files]
        self.text_column = text_column  # the JSONL field, or the parquet / CSV / TSV / datasets column
        self.total_bytes = sum(_size(f) for f in self.files)
        self._table_bytes = 0  # of a parquet file or datasets folder being read (no file position to ask)
        self.num_lines = 0
        self.num_documents = 0
        self._done_bytes = 0
        self._raw: BinaryIO | None = None
        self.location: tuple[Path, int] | None = None  # (file, line number) of the sentence last yielded

    def bytes_read(self) -> int:
        raw = self._raw
        return self._done_bytes + self._table_bytes + (raw.tell() if raw is not None and not raw.closed else 0)

    def __iter__(self) -> Iterator[str | None]:
        for path in self.files:
            if is_datasets_folder(path) or path.name.lower().endswith(".parquet"):
                yield from self._table_documents(path)
            else:
                yield from self._read_file(path)

    def _table_documents(self, path: Path) -> Iterator[str | None]:
        """A parquet file or datasets folder: each row's text is a document, its lines the sentences."""
        rows = datasets_rows(path, self.text_column) if path.is_dir() else parquet_rows(path, self.text_column)
        size = _size(path)
        for row, text, done in rows:
            self._table_bytes = int(size * done)
            yield from self._document(path, row, text)
        self._table_bytes = 0
        self._done_bytes += size

    def _document(self, path: Path, row: int, text: str) -> Iterator[str | None]:
        sentences = [s for s in (s.strip() for s in text.splitlines()) if s]
        if sentences:
            self.num_lines += len(sentences)
            self.num_documents += 1
            self.location = (path, row)
            yield from sentences
            yield None

    def _read_file(self, path: Path) -> Iterator[str | None]:
        name = path.name.lower()
        parse = (self._jsonl_documents if name.endswith((".jsonl", ".jsonl.gz")) else
                 self._csv_documents if name.endswith((".csv", ".tsv")) else self._text_documents)
        try:
            with open(path, "rb") as raw:
                self._raw = raw
                stream = gzip.GzipFile(fileobj=raw) if name.endswith(".gz") else raw
                yield from parse(path, stream)
        except FileNotFoundError:
            raise UserError(f"{path}: no such file") from None
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
            hint = "; is it a complete gzip file?" if name.endswith(".gz") else ""
            raise UserError(f"{path}: cannot read ({e}){hint}") from None
        finally:
            self._raw = None
        self._done_bytes += path.stat().st_size

    def _text_documents(self, path: Path, stream: BinaryIO) -> Iterator[str | None]:
        in_document = False
        for lineno, raw_line in enumerate(stream, 1):
            line = _decode(raw_line, path, lineno).strip()
            if line:
                in_document = True
                self.num_lines += 1
                self.location = (path, lineno)
                yield line
            elif in_document:  # a blank line ends a document
                in_document = False
                self.num_documents += 1
                yield None
        if in_document:  # so does the end of a file
            self.num_documents += 1
            yield None

    def _jsonl_documents(self, path: Path, stream: BinaryIO) -> Iterator[str | None]:
        for lineno, raw_line in enumerate(stream, 1):
            line = _decode(raw_line, path, lineno).strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as e:
                why = "nested too deeply" if isinstance(e, RecursionError) else getattr(e, "msg", e)
                raise UserError(f"{path}:{lineno}: not valid JSON ({why}); "
                                'each line must be one JSON object like {"text": "..."}') from None
            col = self.text_column
            text = record.get(col) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise UserError(f'{path}:{lineno}: no "{col}" string field; each line must be one JSON object '
                                f'like {{"{col}": "..."}} (another field: --text-column NAME)')
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:  # a JSON escape like "\ud800" without its pair: no character
                raise UserError(f'{path}:{lineno}: the "{col}" holds a lone UTF-16 surrogate escape '
                                f'(\\u{ord(text[e.start]):04x}) that encodes no character; fix or remove it') from None
            yield from self._document(path, lineno, text)

    def _csv_documents(self, path: Path, stream: BinaryIO) -> Iterator[str | None]:
        """A CSV or TSV file with a header: each row's text column is a document."""
        lines = (_decode(raw_line, path, lineno) for lineno, raw_line in enumerate(stream, 1))
        for row, text, _ in csv_rows(path, self.text_column, lines):
            yield from self._document(path, row, text)


def _decode(raw_line: bytes, path: Path, lineno: int) -> str:
    if b"\0" in raw_line:
        raise UserError(f"{path}:{lineno}: not UTF-8 text (it contains NUL bytes: a binary or UTF-16 file?); "
                        "give plain UTF-8 text")
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw_line[e.start]:02x} at column {e.start + 1}); "
                        "convert the file to UTF-8 (e.g. with iconv) or leave it out") from None
    return line[1:] if lineno == 1 and line.startswith("\ufeff") else line  # drop a byte-order mark


def iter_documents(files: Iterable[str | Path]) -> Iterator[list[str]]:
    """Documents as lists of stripped, non-empty lines. Empty documents are skipped."""
    document: list[str] = []
    for item in CorpusReader(files):
        if item is None:
            yield document
            document = []
        else:
            document.append(item)
