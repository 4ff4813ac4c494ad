"""Reliability on the data side (docs/reliability.md; `electra data build`, `electra tokenizer train`, the corpus readers): nothing a
user has is lost or damaged, memory stays bounded, and every expected failure is one line naming the file.

The rules, each held by the tests below:

- Packing is linear in a sentence's length and builds exactly the examples it built before.
- A long line reaches the tokenizer in pieces of at most ``sources.PIECE_CHARS`` characters, is never held whole
  when read from a text file, and a cut at whitespace changes no token.
- ``\\r\\n``, ``\\n`` and a lone ``\\r`` all end a line of a text (or CSV) corpus.
- The corpus CSV reader is as strict as the task reader; an unclosed quote is an error naming its line.
- ``max_seq_length`` above ``corpus.MAX_SEQ_LENGTH`` is one line, not a MemoryError.
- A parquet file with a damaged data page, or a malformed ``dataset_dict.json``, is one line naming it.
- ``data build`` and ``tokenizer train`` write through runtime/files.py: on a full disk at any write they stop
  with one line, leave no output and no temporary file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from faults import disk_fills_at
from hypothesis import given, settings
from hypothesis import strategies as st

import electra.data.sources as sources
from electra.data import corpus as corpus_module
from electra.data.corpus import ExampleBuilder, build_dataset, pack_examples
from electra.data.sources import PIECE_CHARS, CorpusReader, cut_pieces, iter_documents
from electra.data.tables import CSV_DIALECT
from electra.data.tokenizer import atomic_output_dir, load_tokenizer, save_tokenizer, train_tokenizer
from electra.errors import UserError
from electra.runtime.files import AtomicDir

CLS, SEP = 1, 2
WORDS = ("the whale ship sea captain ahab ishmael white water boat men harpoon deck night old long great "
         "voyage ocean wind sail").split()


def one_line(message: str) -> bool:
    return "\n" not in message and message.strip() == message


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("tok")
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(300)]
    (base / "corpus.txt").write_text("\n".join(lines) + "\n中文的句子没有空格。\n", encoding="utf-8")
    train_tokenizer([base / "corpus.txt"], 150, base / "tok", min_frequency=1, progress=False)
    return base / "tok"


def words(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))


def documents_of(path: Path, **kwargs) -> list[list[str]]:
    docs, doc = [], []
    for item in CorpusReader([path], **kwargs):
        if item is None:
            docs.append(doc)
            doc = []
        else:
            doc.append(item)
    return docs


# --------------------------------------------------------------------------- packing: linear, and unchanged

class _OldBuilder(ExampleBuilder):
    """The packer as it was (git 2fcc3d4): ``_take`` re-sliced the rest of a split sentence for every example."""

    def _take(self, capacity):
        pending, taken, room, i = self._pending, [], capacity, 0
        while i < len(pending) and room > 0:
            sentence = pending[i]
            if len(sentence) <= room:
                taken.append(sentence)
                room -= len(sentence)
                i += 1
            else:
                taken.append(sentence[:room])
                pending[i] = sentence[room:]
                room = 0
        del pending[:i]
        self._pending_len -= capacity - room
        return taken


def _pack(builder_class, documents, max_len, seed):
    builder = builder_class(max_len, CLS, SEP, random.Random(seed))
    out = []
    for document in documents:
        for sentence in document:
            out += builder.add_sentence(sentence)
        out += builder.end_document()
    return out


sentence_lengths = st.sampled_from([0, 1, 2, 3, 7, 30, 62, 63, 64, 65, 127, 128, 129, 400, 1500])
documents = st.lists(st.lists(sentence_lengths, max_size=12), max_size=5)


@settings(max_examples=200, deadline=None)
@given(lengths=documents, max_len=st.sampled_from([5, 6, 16, 64, 128]), seed=st.integers(0, 2**32))
def test_linear_packing_builds_the_same_examples_as_before(lengths, max_len, seed):
    """Rule: the linear packer's examples are identical to the old algorithm's, for any sentences."""
    rng = random.Random(seed)
    docs = [[[rng.randint(3, 50) for _ in range(n)] for n in doc] for doc in lengths]
    assert _pack(ExampleBuilder, docs, max_len, seed) == _pack(_OldBuilder, docs, max_len, seed)


def _random_documents(seed):
    rng = random.Random(seed)
    docs = []
    for _ in range(rng.randint(1, 6)):
        doc = []
        for _ in range(rng.randint(0, 25)):
            n = rng.choice([0, 1, 2, 5, 10, 30, 60, 127, 128, 300, 1000])
            doc.append([rng.randint(3, 50) for _ in range(n)])
        docs.append(doc)
    return docs


def test_packing_matches_examples_built_before_the_change():
    """Rule: examples are unchanged. The digest was computed with the packer of git 2fcc3d4 (before the fix)."""
    h = hashlib.sha256()
    for seed in range(60):
        max_len = (5, 8, 16, 64, 128)[seed % 5]
        for ids, types in pack_examples(_random_documents(seed), max_len, CLS, SEP, random.Random(seed)):
            h.update(repr((ids, types)).encode())
    assert h.hexdigest() == "8e7f6a38e838a4c443886d317d0f734ab90c50908cd3a06e952cbf1706e324bb"


class _CountingList(list):
    """A sentence that counts the tokens its slices copy (a slice of it is one too)."""

    copied = 0

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if isinstance(index, slice):
            _CountingList.copied += len(item)
            return _CountingList(item)
        return item


def test_packing_a_long_sentence_copies_each_token_a_bounded_number_of_times():
    """Rule: packing is linear: one sentence of n tokens costs O(n) copying, not O(n^2 / max_seq_length)
    (0.36M, 0.71M, 1.43M tokens on one line took 1.4 s, 6.0 s, 26.8 s before)."""
    n = 30_000
    _CountingList.copied = 0
    examples = list(pack_examples([[_CountingList(range(3, 3 + n))]], 128, CLS, SEP, random.Random(0)))
    assert sum(len(ids) for ids, _ in examples) >= n
    assert _CountingList.copied <= 2 * n, f"{_CountingList.copied} tokens copied to pack {n}"


# --------------------------------------------------------------------------- long lines: read and tokenised in pieces

def _long_line_files(tmp_path: Path, line: str) -> dict[str, Path]:
    """The same one-line document as .txt, .txt.gz, .jsonl, .jsonl.gz and .csv."""
    files = {"txt": tmp_path / "c.txt", "txt.gz": tmp_path / "c.txt.gz", "jsonl": tmp_path / "c.jsonl",
             "jsonl.gz": tmp_path / "c.jsonl.gz", "csv": tmp_path / "c.csv"}
    data = line.encode("utf-8")  # no newline at all: the whole file is one line
    files["txt"].write_bytes(data)
    files["txt.gz"].write_bytes(gzip.compress(data))
    record = json.dumps({"text": line}, ensure_ascii=False).encode("utf-8") + b"\n"
    files["jsonl"].write_bytes(record)
    files["jsonl.gz"].write_bytes(gzip.compress(record))
    files["csv"].write_bytes(b"text\n" + line.encode("utf-8") + b"\n")
    return files


@pytest.mark.parametrize("kind", ["words", "chinese"])
def test_a_long_line_reaches_the_tokenizer_in_bounded_pieces(tmp_path, kind):
    """Rule: however long a line, the reader hands on pieces of at most PIECE_CHARS characters, of one document,
    in order, keeping every character; a line with spaces is cut only at whitespace."""
    line = words(60_000) if kind == "words" else "中文的句子没有空格" * 30_000  # 350k / 270k characters
    for name, path in _long_line_files(tmp_path, line).items():
        docs = documents_of(path)
        assert len(docs) == 1, name
        pieces = docs[0]
        assert len(pieces) > 3 and max(map(len, pieces)) <= PIECE_CHARS, name
        if kind == "words":
            assert " ".join(pieces) == line, name  # cut at spaces: the words are intact
            assert all(p.split()[0] in WORDS and p.split()[-1] in WORDS for p in pieces)
        else:
            assert "".join(pieces) == line, name
    # A text file's pieces do not depend on how the line arrived (64 KiB blocks) nor on its format.
    assert documents_of(tmp_path / "c.txt") == [[p.strip() for p in cut_pieces(line)[0]]]


def test_data_build_never_hands_the_tokenizer_more_than_a_piece(tmp_path, tokenizer, monkeypatch):
    """Rule: a 600k-character line with no newline (the case that took 1.0 GB) reaches tokenizer.encode_batch in
    pieces of at most PIECE_CHARS characters, and those pieces give exactly the tokens of the whole line."""
    line = words(100_000, seed=3)
    (tmp_path / "c.txt").write_text(line, encoding="utf-8")
    seen = []

    class Recording:
        def __init__(self, tok):
            object.__setattr__(self, "_tok", tok)

        def encode_batch(self, lines, **kwargs):
            seen.extend(len(s) for s in lines)
            return self._tok.encode_batch(lines, **kwargs)

        def __getattr__(self, name):
            return getattr(self._tok, name)

        def __setattr__(self, name, value):
            setattr(self._tok, name, value)

    real_load = corpus_module.load_tokenizer
    monkeypatch.setattr(corpus_module, "load_tokenizer", lambda t: Recording(real_load(t)))
    m = build_dataset([tmp_path / "c.txt"], tokenizer, tmp_path / "data", max_seq_length=64, valid_fraction=0,
                      progress=False)
    assert seen and max(seen) <= PIECE_CHARS and sum(seen) >= len(line) - len(seen)
    tok = load_tokenizer(tokenizer)
    ids = np.concatenate([np.load(tmp_path / "data" / s["input_ids"]) for s in m["splits"]["train"]["shards"]])
    special = m["special_ids"]
    packed = [t for t in ids.ravel().tolist() if t not in (special["cls"], special["sep"], special["pad"])]
    assert packed == tok.encode(line, add_special_tokens=False).ids


@pytest.mark.parametrize("name", ["c.txt", "c.txt.gz"])
def test_reading_a_long_line_holds_a_bounded_part_of_it(tmp_path, name):
    """Rule: the memory of reading one line is bounded: a 4 MB line with no newline is never held whole (before,
    a line was read and decoded whole: several times its size)."""
    data = words(700_000, seed=5).encode()[:4_000_000]
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    reader = CorpusReader([path])
    tracemalloc.start()
    try:
        longest = max((len(s) for s in reader if s is not None), default=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert longest <= PIECE_CHARS and reader.num_documents == 1
    assert peak < 1_500_000, f"peak {peak} bytes while reading a {len(data)}-byte line"


@settings(max_examples=150, deadline=None)
@given(text=st.lists(st.sampled_from(["ab", "c", " ", "  ", "\t", "é", "中文", "😀", "\n", "\r\n", "\r", "\u3000",
                                      "x" * 40]), max_size=60).map("".join),
       block=st.sampled_from([1, 2, 3, 5, 64]), limit=st.sampled_from([4, 7, 16]))
def test_pieces_do_not_depend_on_block_size_or_format(tmp_path_factory, text, block, limit):
    """Rule: reading in blocks changes nothing: any block size (1 byte up) gives the pieces ``cut_pieces`` makes of
    each whole line, and a JSONL record with the same text gives the same sentences."""
    tmp = tmp_path_factory.mktemp("blocks")
    (tmp / "c.txt").write_bytes(text.encode("utf-8"))
    (tmp / "c.jsonl").write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(sources, "_BLOCK", block)
        mp.setattr(sources, "PIECE_CHARS", limit)
        got = [s for d in documents_of(tmp / "c.txt") for s in d]
        record = [s for d in documents_of(tmp / "c.jsonl") for s in d]
        expected = [p.strip() for line in text.splitlines() for p in cut_pieces(line, limit=limit)[0] if p.strip()]
    finally:
        mp.undo()
    assert all(len(s) <= limit for s in got)
    assert got == [s for s in expected]
    assert record == expected


# --------------------------------------------------------------------------- line ends

@pytest.mark.parametrize("end", ["\r", "\r\n", "\n"])
@pytest.mark.parametrize("gz", [False, True])
def test_every_line_end_ends_a_line(tmp_path, end, gz):
    """Rule: \\r\\n, \\n and a lone \\r (old Mac files) all end a line; a blank line ends a document. (A file with only
    \\r line ends was one line, one document, before.)"""
    text = end.join(["One.", "Two.", "", "Three.", "Four.", ""])
    path = tmp_path / ("c.txt.gz" if gz else "c.txt")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    assert list(iter_documents([path])) == [["One.", "Two."], ["Three.", "Four."]]
    reader = CorpusReader([path])
    list(reader)
    assert (reader.num_documents, reader.num_lines) == (2, 4)


def test_a_cr_lf_split_between_blocks_is_one_line_end(tmp_path, monkeypatch):
    """Rule: \\r\\n is one line end even when a read block ends between the two (no blank line, no extra document)."""
    monkeypatch.setattr(sources, "_BLOCK", 4)
    (tmp_path / "c.txt").write_bytes(b"abc\r\ndefgh\r\n\r\nij\r\r\nk")
    assert list(iter_documents([tmp_path / "c.txt"])) == [["abc", "defgh"], ["ij"], ["k"]]


def test_errors_name_the_line_counting_every_line_end(tmp_path):
    """Rule: line numbers count lone \\r too, and a bad byte of a long line is named with its line and column."""
    (tmp_path / "mac.txt").write_bytes(b"one\rtwo\rbad \xff\r")
    with pytest.raises(UserError, match=r"mac.txt:3: not UTF-8 text \(byte 0xff at column 5\)"):
        list(CorpusReader([tmp_path / "mac.txt"]))
    long = b"word " * 40_000 + b"\xff"
    (tmp_path / "long.txt").write_bytes(b"first\n" + long)
    with pytest.raises(UserError, match=rf"long.txt:2: not UTF-8 text \(byte 0xff at column {len(long)}\)"):
        list(CorpusReader([tmp_path / "long.txt"]))


def test_a_csv_corpus_with_cr_line_ends_reads_its_rows(tmp_path):
    """Rule: a CSV file saved with \\r line ends ("CSV (Macintosh)") reads row by row, like the same file with \\n."""
    rows = 'id,text\r1,"First doc.\rSecond line."\r2,Another doc.\r'
    (tmp_path / "mac.csv").write_text(rows, encoding="utf-8", newline="")
    (tmp_path / "unix.csv").write_text(rows.replace("\r", "\n"), encoding="utf-8", newline="")
    expected = [["First doc.", "Second line."], ["Another doc."]]
    assert list(iter_documents([tmp_path / "mac.csv"])) == list(iter_documents([tmp_path / "unix.csv"])) == expected


# --------------------------------------------------------------------------- CSV: one strict dialect

def test_the_csv_dialect_is_strict_for_corpora_and_tasks(tmp_path):
    """Rule: one CSV policy (tables.CSV_DIALECT, strict): a file the task reader rejects, the corpus reader rejects."""
    assert CSV_DIALECT["strict"] is True
    from electra.data.readers import read_classification

    bad = tmp_path / "bad.csv"
    bad.write_text('text,label\nfine,1\n"unclosed,0\nmore,1\nrows,0\n', encoding="utf-8")
    with pytest.raises(UserError) as task_error:
        read_classification(bad)
    with pytest.raises(UserError) as corpus_error:
        list(CorpusReader([bad]))
    for e in (task_error, corpus_error):
        assert str(bad) in str(e.value) and one_line(str(e.value))


@pytest.mark.parametrize("content, line, words", [
    # An unclosed quote used to swallow the rest of the file into one document, silently.
    ('id,text\n1,fine\n2,"never closed\n3,more\n4,rows\n', 3, "never closed"),
    # The record starts on line 2 (a quoted field over two lines); the bad quote opens on line 3.
    ('id,text,x\n1,"two\nlines",fine\n2,"open\n3,rest\n', 4, "never closed"),
    ('id,text\n1,fine\n2,"quoted"junk\n3,ok\n', 3, "check the quotes"),
    ('id\ttext\n1\t"never closed\n2\tmore\n', 2, "never closed"),
])
def test_a_bad_quote_in_a_corpus_csv_names_its_line(tmp_path, content, line, words):
    """Rule: the corpus CSV/TSV reader is strict: a quote never closed (or text after a closing quote) is one
    line naming the file and the line of that quote; nothing is written."""
    path = tmp_path / ("c.tsv" if "\t" in content else "c.csv")
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as e:
        list(CorpusReader([path]))
    message = str(e.value)
    assert f"{path}:{line}:" in message and words in message and one_line(message), message


def test_a_corpus_csv_with_quoted_fields_still_reads(tmp_path):
    """Rule: strict rejects only broken quoting: doubled quotes, quoted commas and newlines read as before."""
    path = tmp_path / "ok.csv"
    path.write_text('id,text\n1,"He said ""hi"", twice.\nThen left."\n2,plain\n', encoding="utf-8")
    assert list(iter_documents([path])) == [['He said "hi", twice.', "Then left."], ["plain"]]


# --------------------------------------------------------------------------- max_seq_length

def test_a_huge_max_seq_length_is_one_line(tmp_path, tokenizer, capsys):
    """Rule: `data build --max-seq-length 100000000` is refused with one line (it was a MemoryError traceback)."""
    (tmp_path / "c.txt").write_text("the whale\n")
    with pytest.raises(UserError, match=rf"max_seq_length 100000000 is too long; give at most "
                                        rf"{corpus_module.MAX_SEQ_LENGTH}"):
        build_dataset([tmp_path / "c.txt"], tokenizer, tmp_path / "data", max_seq_length=100_000_000, progress=False)
    from electra.cli import main

    code = main(["data", "build", "--input", str(tmp_path / "c.txt"), "--tokenizer", str(tokenizer), "--out",
                 str(tmp_path / "data"), "--max-seq-length", "100000000", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "too long" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]


def test_long_examples_fill_smaller_shards(tmp_path, tokenizer, monkeypatch):
    """Rule: the shard being filled holds at most SHARD_BUFFER_TOKENS positions (long examples: fewer rows)."""
    monkeypatch.setattr(corpus_module, "SHARD_BUFFER_TOKENS", 32 * 10)
    (tmp_path / "c.txt").write_text("\n".join(words(30, seed=i) for i in range(40)) + "\n")
    m = build_dataset([tmp_path / "c.txt"], tokenizer, tmp_path / "data", max_seq_length=32, valid_fraction=0,
                      shard_examples=1000, progress=False)
    sizes = [s["num_examples"] for s in m["splits"]["train"]["shards"]]
    assert len(sizes) > 1 and max(sizes) == 10


# --------------------------------------------------------------------------- damaged tables

def _parquet_with_a_damaged_page(path: Path, compression: str, where: str) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    docs = [f"document number {i} " * 20 for i in range(3000)]
    pq.write_table(pa.table({"text": docs}), path, compression=compression, row_group_size=1000)
    column = pq.ParquetFile(path).metadata.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    footer = len(data) - 8 - struct.unpack("<I", data[-8:-4])[0]
    at = column.data_page_offset + (0 if where == "header" else column.total_compressed_size // 2)
    assert at + 16 < footer, "the footer stays intact"
    for k in range(at, at + 16):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    assert pq.ParquetFile(path).metadata.num_rows == 3000  # the footer still reads


@pytest.mark.parametrize("compression, where", [("none", "header"), ("none", "values"), ("snappy", "values")])
def test_a_parquet_file_with_a_damaged_data_page_is_one_line(tmp_path, tokenizer, compression, where):
    """Rule: a parquet file whose footer reads but whose data page does not decode is one line naming it (it was
    an OSError or UnicodeDecodeError traceback), and nothing is written."""
    path = tmp_path / "bad.parquet"
    _parquet_with_a_damaged_page(path, compression, where)
    with pytest.raises(UserError) as e:
        list(CorpusReader([path]))
    assert str(path) in str(e.value) and "damaged parquet" in str(e.value) and one_line(str(e.value))
    with pytest.raises(UserError, match="bad.parquet"):
        build_dataset([path], tokenizer, tmp_path / "out" / "data", progress=False)
    assert not (tmp_path / "out" / "data").exists() and not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("damage", ["truncated", "not an object", "splits not a list"])
def test_a_malformed_dataset_dict_json_is_one_line(tmp_path, damage):
    """Rule: a datasets folder whose dataset_dict.json is malformed is one line naming that file (it was a
    JSONDecodeError or AttributeError traceback)."""
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": ["one document.", "another one."]})
    folder = tmp_path / "dsdict"
    datasets.DatasetDict({"train": ds}).save_to_disk(str(folder))
    index = folder / "dataset_dict.json"
    if damage == "truncated":
        index.write_bytes(index.read_bytes()[:7])
    elif damage == "not an object":
        index.write_text("[1, 2]")
    else:
        index.write_text('{"splits": "train"}')
    with pytest.raises(UserError) as e:
        list(CorpusReader([folder]))
    assert str(index) in str(e.value) and one_line(str(e.value)), str(e.value)


# --------------------------------------------------------------------------- writing through runtime/files.py

def _small_corpus(folder: Path) -> Path:
    folder.mkdir()
    rng = random.Random(1)
    docs = ["\n".join(words(rng.randint(3, 40), seed=rng.randint(0, 10**6)) + "." for _ in range(rng.randint(1, 5)))
            for _ in range(30)]
    (folder / "a.txt").write_text("\n\n".join(docs) + "\n")
    return folder


def _count_writes(monkeypatch, run) -> int:
    with monkeypatch.context() as mp:
        disk = disk_fills_at(mp, None)
        run()
    return disk.writes


def _assert_full_disk_leaves_nothing(monkeypatch, tmp_path, run, total: int) -> None:
    """``run(out)`` with the disk filling at every write from the first to the last: one line, nothing left."""
    assert total >= 5
    for n in range(1, total + 1):
        parent = tmp_path / f"full{n}"
        parent.mkdir()
        with monkeypatch.context() as mp:
            disk = disk_fills_at(mp, n)
            with pytest.raises(UserError) as e:
                run(parent / "out")
        message = str(e.value)
        assert disk.failed >= 1 and "disk is full" in message and one_line(message), (n, message)
        assert str(parent / "out") in message, message
        assert list(parent.iterdir()) == [], (n, [p.name for p in parent.iterdir()])


def test_data_build_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, tokenizer, monkeypatch):
    """Rule: every file of `data build` (shards, manifest, tokenizer) is written through runtime/files.py: the disk
    filling at any of its writes is a WriteFailed naming --out ("the disk is full"), no --out folder and no
    temporary file beside it (it was a traceback)."""
    corpus = _small_corpus(tmp_path / "corpus")

    def run(out):
        return build_dataset([corpus], tokenizer, out, max_seq_length=16, valid_fraction=0.2, shard_examples=8,
                             progress=False, word_segmenter=None)

    total = _count_writes(monkeypatch, lambda: run(tmp_path / "counted"))
    shards = len(list((tmp_path / "counted").glob("*.npy")))
    assert shards >= 4 and total >= shards + 5, "every shard, the manifest and the tokenizer files are counted"
    _assert_full_disk_leaves_nothing(monkeypatch, tmp_path, run, total)


def test_tokenizer_train_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """Rule: `tokenizer train` writes its folder through runtime/files.py: a full disk at any write is one line,
    and neither --out nor a temporary folder remains."""
    corpus = _small_corpus(tmp_path / "corpus")

    def run(out):
        return train_tokenizer([corpus], 80, out, min_frequency=1, progress=False)

    total = _count_writes(monkeypatch, lambda: run(tmp_path / "counted"))
    _assert_full_disk_leaves_nothing(monkeypatch, tmp_path, run, total)


def test_data_build_on_a_full_disk_through_the_cli(tmp_path, tokenizer, monkeypatch, capsys):
    """Rule: the command line shows a full disk as one line, exit status 2."""
    from electra.cli import main

    corpus = _small_corpus(tmp_path / "corpus")
    disk_fills_at(monkeypatch, 3)
    code = main(["data", "build", "--input", str(corpus), "--tokenizer", str(tokenizer), "--out",
                 str(tmp_path / "out" / "data"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "disk is full" in err[0], err
    assert list((tmp_path / "out").iterdir()) == []


def test_saved_tokenizer_files_are_those_the_rust_writer_wrote(tmp_path, tokenizer):
    """Rule: writing tokenizer.json through our writer (to_str) gives the same bytes as tokenizers' own save."""
    tok = load_tokenizer(tokenizer)
    save_tokenizer(tok, tmp_path / "ours")
    tok.save(str(tmp_path / "rust.json"))
    assert (tmp_path / "ours" / "tokenizer.json").read_bytes() == (tmp_path / "rust.json").read_bytes()
    assert load_tokenizer(tmp_path / "ours").to_str() == tok.to_str()


def test_atomic_output_dir_is_atomic_dir_and_still_refuses_a_folder_filled_meanwhile(tmp_path):
    """Rule: one implementation of atomic output folders (runtime.files.AtomicDir); atomic_output_dir keeps its
    check that --out is new or empty, at the start and before the rename."""
    assert issubclass(atomic_output_dir, AtomicDir)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="already exists and is not empty"):
        with atomic_output_dir(out) as tmp:
            (tmp / "ours.txt").write_text("x")
            out.mkdir()
            (out / "theirs.txt").write_text("mine")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "theirs.txt").read_text() == "mine"
    (tmp_path / "file").write_text("a file")
    with pytest.raises(UserError, match="is a file"):
        with atomic_output_dir(tmp_path / "file"):
            pass
    with atomic_output_dir(tmp_path / "new") as tmp:
        (tmp / "a.txt").write_text("done")
    assert (tmp_path / "new" / "a.txt").read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "new", "out"]


def test_an_out_folder_under_a_file_is_refused_before_any_work(tmp_path, monkeypatch):
    """Rule: `tokenizer train` / `data build` with --out under a file is one line at once, not after training."""
    (tmp_path / "file").write_text("a file")
    corpus = _small_corpus(tmp_path / "corpus")
    monkeypatch.setattr("electra.data.tokenizer._scan_corpus", lambda *a, **k: pytest.fail("trained first"))
    with pytest.raises(UserError, match="which is a file"):
        train_tokenizer([corpus], 80, tmp_path / "file" / "tok", progress=False)
    assert (tmp_path / "file").read_text() == "a file"
