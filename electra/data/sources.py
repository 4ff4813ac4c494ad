"""Reading a raw corpus: text and JSONL files (gzipped or not), parquet, CSV/TSV and `datasets` folders,
as documents of lines, streamed with bounded memory; a broken line is named with its file and number.

Line ends. In text (and CSV/TSV) files ``\r\n``, ``\n`` and a lone ``\r`` (old Mac files) all end a line; a
JSONL file's records end at ``\n`` only (JSON Lines; a ``\r`` before it is stripped). The text of a JSONL record
or a table row is split into lines at every line break ``str.splitlines`` knows.

Long lines. A line is handed on (to the tokenizer, the packer, the vocabulary trainer) in pieces of at most
``PIECE_CHARS`` (65,536) characters, so that memory stays bounded whatever a line's length (minified dumps, OCR
pages, Chinese text without line breaks): a piece ends after the last whitespace character within its first
``PIECE_CHARS`` characters, or at ``PIECE_CHARS`` characters when there is none (never inside a character). A
text file's long line is also *read* in pieces (64 KiB at a time, cut between UTF-8 characters), so it is never
held whole; a JSONL record (one JSON value) and a CSV row are read whole and their text is then split the same
way. The pieces of one line stay in its document, in order, as consecutive sentences: a cut at whitespace
changes no token, and the packer may start segment B at a piece boundary as at a line end. Every piece counts
as a line in ``num_lines``; errors name the line (and the byte column) in the file.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from electra.data.tables import (FOLDER_TABLE_SUFFIXES, TABLE_SUFFIXES, csv_rows, datasets_rows, is_datasets_folder,
                                 parquet_rows)
from electra.errors import UserError

CORPUS_SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz")
PIECE_CHARS = 1 << 16  # the most characters of one line handed on at a time (see the module docstring)
_BLOCK = 1 << 16  # bytes read from a file at a time; also the most bytes of a text line held before decoding
_LAST_SPACE = re.compile(r"\s\S*\Z")  # the last whitespace character (of a window: search with pos, endpos)


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
        sentences = [piece for line in text.splitlines() for piece in _stripped_pieces(line)]
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
        line_has_text = False  # some piece of the current line had text
        rest = ""  # the current line's text not yet handed on (less than PIECE_CHARS + _BLOCK characters)
        for lineno, chunk, ends in _decoded_lines(stream, path, cr_ends_line=True, max_bytes=_BLOCK):
            if rest:
                chunk, rest = rest + chunk, ""
            if ends and len(chunk) <= PIECE_CHARS:  # an ordinary line: one piece
                pieces = (chunk,)
            else:
                pieces, used = cut_pieces(chunk, final=ends)
                rest = chunk[used:]
            for piece in pieces:
                piece = piece.strip()
                if piece:
                    in_document = line_has_text = True
                    self.num_lines += 1
                    self.location = (path, lineno)
                    yield piece
            if ends:
                if not line_has_text and in_document:  # a blank line ends a document
                    in_document = False
                    self.num_documents += 1
                    yield None
                line_has_text = False
        if in_document:  # so does the end of a file
            self.num_documents += 1
            yield None

    def _jsonl_documents(self, path: Path, stream: BinaryIO) -> Iterator[str | None]:
        for lineno, line, _ in _decoded_lines(stream, path, cr_ends_line=False):  # a record is read whole
            line = line.strip()
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
        lines = (line + "\n" for _, line, _ in _decoded_lines(stream, path, cr_ends_line=True))
        for row, text, _ in csv_rows(path, self.text_column, lines):
            yield from self._document(path, row, text)


def cut_pieces(text: str, final: bool = True, limit: int | None = None) -> tuple[list[str], int]:
    """Cut a line into pieces of at most ``limit`` characters, each ending after the last whitespace character in
    its window (or at ``limit`` characters if it has none). Returns the pieces and how many characters of
    ``text`` they use: with ``final`` all of them; otherwise (more of the line is still to come) a tail of at
    most ``limit`` characters is left for the next call, so the pieces do not depend on how the line arrived.
    Linear in ``len(text)``. ``limit``: PIECE_CHARS unless given."""
    limit = limit or PIECE_CHARS
    pieces, pos, n = [], 0, len(text)
    while n - pos > limit:
        end = pos + limit
        space = _LAST_SPACE.search(text, pos, end)
        cut = space.start() + 1 if space else end
        pieces.append(text[pos:cut])
        pos = cut
    if final and pos < n:
        pieces.append(text[pos:] if pos else text)
        pos = n
    return pieces, pos


def _stripped_pieces(line: str) -> list[str]:
    """A line of a record's (or row's) text as its non-empty, stripped pieces."""
    if len(line) <= PIECE_CHARS:
        line = line.strip()
        return [line] if line else []
    return [p for p in (p.strip() for p in cut_pieces(line)[0]) if p]


def _utf8_cut(data: bytes, at: int, start: int) -> int | None:
    """A position near ``at`` (``start`` < ``at`` < ``len(data)``) that does not fall inside a UTF-8 character:
    ``at`` moved back (at most 3 bytes, never to ``start``), or forward when the character begins at ``start``;
    None when that character runs past the end of ``data`` (more is to come)."""
    for cut in range(at, max(at - 3, start + 1) - 1, -1):
        if data[cut] & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            return cut
    for cut in range(at + 1, at + 4):
        if cut >= len(data):
            return None
        if data[cut] & 0xC0 != 0x80:
            return cut
    return at  # not UTF-8 there anyway: the decoder will say so


def _raw_lines(stream: BinaryIO, cr_ends_line: bool, max_bytes: int | None) -> Iterator[tuple[int, int, bytes, bool]]:
    """A binary stream's lines as ``(line number, byte offset in the line, bytes, ends_line)``, without their line
    ends. Lines end at ``\n``, and with ``cr_ends_line`` also at ``\r\n`` and a lone ``\r``. With ``max_bytes``
    a longer line comes in pieces of at most that many bytes, cut between UTF-8 characters (``ends_line`` False
    but on the last), so no more than about ``max_bytes + _BLOCK`` bytes of it are ever held."""
    lineno, offset, held, held_len, skip_lf = 1, 0, [], 0, False

    def pieces(data: bytes, ends: bool) -> Iterator[tuple[int, int, bytes, bool]]:
        nonlocal offset, held, held_len
        start = 0
        if max_bytes is not None:
            while len(data) - start > max_bytes:
                cut = _utf8_cut(data, start + max_bytes, start)
                if cut is None:  # a character longer than max_bytes, not complete yet
                    if not ends:
                        break
                    cut = len(data)
                yield lineno, offset, data[start:cut], False
                offset += cut - start
                start = cut
        rest = data[start:] if start else data
        if ends:
            yield lineno, offset, rest, True
            offset, held, held_len = 0, [], 0
        else:
            held, held_len = [rest], len(rest)

    while True:
        block = stream.read(_BLOCK)
        if not block:
            break
        if skip_lf:  # the previous block ended with \r: a \n opening this one belongs to it
            skip_lf = False
            if block[:1] == b"\n":
                block = block[1:]
                if not block:
                    continue
        if cr_ends_line:
            parts = block.splitlines()  # at \n, \r\n and \r (bytes know no other line breaks)
            if block.endswith((b"\n", b"\r")):
                tail = b""
                skip_lf = block.endswith(b"\r")
            else:
                tail = parts.pop()
        else:
            parts = block.split(b"\n")
            tail = parts.pop()
        for part in parts:
            if held:
                held.append(part)
                part = b"".join(held)
            if max_bytes is None or len(part) <= max_bytes:  # the usual case: a whole line
                yield lineno, offset, part, True
                offset, held, held_len = 0, [], 0
            else:
                yield from pieces(part, True)
            lineno += 1
        if tail:
            held.append(tail)
            held_len += len(tail)
            if max_bytes is not None and held_len > max_bytes:
                yield from pieces(b"".join(held), False)
    if held:
        yield from pieces(b"".join(held), True)


def _decoded_lines(stream: BinaryIO, path: Path, cr_ends_line: bool,
                   max_bytes: int | None = None) -> Iterator[tuple[int, str, bool]]:
    """``_raw_lines`` decoded: ``(line number, text, ends_line)``; a byte-order mark opening the file is dropped."""
    for lineno, offset, raw, ends in _raw_lines(stream, cr_ends_line, max_bytes):
        line = _decode(raw, path, lineno, offset)
        if lineno == 1 and offset == 0 and line.startswith("\ufeff"):  # a byte-order mark
            line = line[1:]
        if not cr_ends_line and ends and line.endswith("\r"):
            line = line[:-1]
        yield lineno, line, ends


def _decode(raw_line: bytes, path: Path, lineno: int, offset: int = 0) -> str:
    """``raw_line`` (a line, or the piece of one starting at byte ``offset``) as text; a UserError naming the line
    and the byte's column if it is not UTF-8 or holds a NUL."""
    if b"\0" in raw_line:
        raise UserError(f"{path}:{lineno}: not UTF-8 text (it contains NUL bytes: a binary or UTF-16 file?); "
                        "give plain UTF-8 text")
    try:
        return raw_line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw_line[e.start]:02x} at column "
                        f"{offset + e.start + 1}); convert the file to UTF-8 (e.g. with iconv) or leave it "
                        "out") from None


def iter_documents(files: Iterable[str | Path]) -> Iterator[list[str]]:
    """Documents as lists of stripped, non-empty lines. Empty documents are skipped."""
    document: list[str] = []
    for item in CorpusReader(files):
        if item is None:
            yield document
            document = []
        else:
            document.append(item)
