"""Property tests for the pre-training corpus reader and builder (electra/data/corpus.py): whatever the bytes of
the .txt, .txt.gz, .jsonl and .jsonl.gz files, reading gives documents that keep every character of the text, or
a one-line UserError naming the file (and the line); building a data folder gives shards that hold exactly the
corpus's tokens, or such an error and nothing written. Never another exception, never a hang."""

import gzip
import itertools
import json
from pathlib import Path

import fuzzing
import numpy as np
import pytest
from fuzzing import FUZZ, mostly
from hypothesis import given
from hypothesis import strategies as st

from electra.data.corpus import build_dataset
from electra.data.sources import CorpusReader, find_corpus_files, iter_documents
from electra.data.tokenizer import load_tokenizer, train_tokenizer
from electra.errors import UserError


def check(reader, path, data: bytes | None = None, **kwargs):
    """``reader(path)`` on ``data`` (written first): a result, or None after a one-line error naming the path."""
    if data is not None:
        path.write_bytes(data)
    return fuzzing.check(reader, path, name=str(path), **kwargs)


def read(path: Path):
    """What ``electra tokenizer train`` and ``electra data build`` read: (documents, reader with its counts)."""
    reader = CorpusReader(find_corpus_files([path]))
    documents, document = [], []
    for item in reader:
        if item is None:
            documents.append(document)
            document = []
        else:
            document.append(item)
    assert document == [], "the stream ends with the end of a document"
    assert documents == list(iter_documents(find_corpus_files([path])))
    return documents, reader


def visible(text: str) -> str:
    """The characters a reader must keep: everything but whitespace and line breaks (which it may strip or split on)."""
    return "".join(text.split())


def assert_documents(documents, reader) -> None:
    assert reader.num_documents == len(documents)
    assert reader.num_lines == sum(map(len, documents))
    for document in documents:
        assert document, "empty documents are skipped"
        for sentence in document:
            assert isinstance(sentence, str) and sentence and sentence == sentence.strip() and "\n" not in sentence
            sentence.encode("utf-8")  # real text: no lone surrogates for the tokenizer to choke on


# Pieces that matter to the reader: line ends of every kind, BOMs, NULs, whitespace, non-ASCII, long words.
PIECES = ["\n", "\n", "\r\n", "\r", "\n\n", " ", "\t", "\ufeff", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c",
          "\x00", "\u200b", "é", "中文", "，", "。", "ＡＢ", "カタカナ", "ガ", "한국어", "\u3000", "😀",
          "the", "whale", "sea", ".", "##", "[CLS]", "[MASK]", "a" * 150, "{", '"']
text = st.lists(st.sampled_from(PIECES) | st.text(max_size=5), max_size=40).map("".join)
raw = st.binary(max_size=300)
encoded = st.tuples(text, st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"])).map(
    lambda t: t[0].encode(t[1], "replace"))
gzip_like = st.binary(max_size=40).map(lambda b: b"\x1f\x8b\x08" + b)  # a gzip header, then anything


def first_bad_line(data: bytes) -> int | None:
    """The 1-based line (split at b"\\r\\n", b"\\n" and a lone b"\\r", as the reader does) that is not UTF-8 text
    without NULs, if any."""
    for lineno, line in enumerate(data.splitlines(), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return lineno
        if b"\0" in line:
            return lineno
    return None


@FUZZ
@given(data=mostly(text.map(str.encode), raw | encoded), gz=st.booleans())
def test_read_txt_never_crashes(tmp_path, data, gz):
    """An exact oracle: a .txt (or an intact .txt.gz) reads iff it is UTF-8 without NULs; an error names the first
    bad line; what is read keeps every visible character, in order."""
    path = tmp_path / ("c.txt.gz" if gz else "c.txt")
    result = check(read, path, gzip.compress(data) if gz else data)
    bad = first_bad_line(data)
    assert (result is None) == (bad is not None)
    if result is None:
        with pytest.raises(UserError, match=f":{bad}: not UTF-8"):
            read(path)
        return
    documents, reader = result
    assert_documents(documents, reader)
    text = data.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is not text
    assert visible(" ".join(s for d in documents for s in d)) == visible(text)
    assert reader.bytes_read() == reader.total_bytes == path.stat().st_size


@FUZZ
@given(data=raw | gzip_like | encoded, cut=st.none() | st.integers(0, 60), name=st.sampled_from(["g.txt.gz",
                                                                                                 "g.jsonl.gz"]))
def test_read_broken_gzip_never_crashes(tmp_path, data, cut, name):
    blob = gzip.compress(data) if cut is None else (gzip.compress(data)[:cut] if len(data) % 2 else data[:cut])
    result = check(read, tmp_path / name, blob)
    if result is not None:
        assert_documents(*result)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                               st.sampled_from(["text", "id", "x"]), inner, max_size=3),
                           max_leaves=8)
# Lone surrogates reach a str only through JSON escapes ("\ud800"); a valid pair is one character.
jsonl_text = st.lists(st.sampled_from(PIECES + ["\ud800", "\udfff", "\ud83d\ude00"]) | st.text(max_size=5),
                      max_size=20).map("".join)
record = st.fixed_dictionaries({"text": mostly(jsonl_text, json_values)}, optional={"id": json_values})
deep = st.integers(1, 50_000).map(lambda n: "[" * n)
line = mostly(st.tuples(record, st.booleans()).map(lambda r: json.dumps(r[0], ensure_ascii=r[1])),
              json_values.map(json.dumps) | text.filter(lambda s: "\n" not in s) | deep | st.just(""))


@FUZZ
@given(lines=st.lists(line, max_size=6), gz=st.booleans(), crlf=st.booleans())
def test_read_jsonl_never_crashes(tmp_path, lines, gz, crlf):
    data = ("\r\n" if crlf else "\n").join(lines).encode("utf-8", "surrogatepass")
    path = tmp_path / ("c.jsonl.gz" if gz else "c.jsonl")
    result = check(read, path, gzip.compress(data) if gz else data)
    if result is not None:
        documents, reader = result
        assert_documents(documents, reader)
        # Every non-blank line was a JSON object with a "text" string, and all of that text is kept, in order.
        if lines:
            lines[0] = lines[0].removeprefix("\ufeff")  # a byte-order mark opening the file
        texts = [json.loads(s.strip())["text"] for s in lines if s.strip()]
        assert visible(" ".join(s for d in documents for s in d)) == visible(" ".join(texts))


# --------------------------------------------------------------------------- building a data folder

WORDS = "the whale ship sea captain ahab white water boat men harpoon deck night old long great voyage".split()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("tok")
    (base / "corpus.txt").write_text("\n".join(" ".join(WORDS[i:] + WORDS[:i]) + "." for i in range(len(WORDS))))
    train_tokenizer([base / "corpus.txt"], 120, base / "tok", min_frequency=1, progress=False)
    return base / "tok"


NAMES = ["a.txt", "b.txt.gz", "c.jsonl", "d.jsonl.gz", "sub/e.txt", "sub/deeper/f.TXT", ".hidden.txt", "notes.md",
         "g.jsonl"]
words = st.lists(st.sampled_from(WORDS + ["\n", "\n\n", ".", "é", "\r\n", " ", "[SEP]", "[PAD]", "[MASK]"]),
                 max_size=60).map(" ".join)


@st.composite
def corpus_file(draw):
    name = draw(st.sampled_from(NAMES))
    if name.endswith((".jsonl", ".jsonl.gz")):
        body = "\n".join(json.dumps({"text": t}) for t in draw(st.lists(mostly(words, jsonl_text), max_size=4)))
        data = mostly(st.just(body.encode("utf-8", "surrogatepass")), raw | st.just(b'{"text": 1}'))
    else:
        data = mostly(words.map(str.encode), raw | text.map(str.encode))
    data = draw(data)
    if name.endswith(".gz"):
        data = gzip.compress(data)
        data = draw(mostly(st.just(data), st.integers(0, len(data)).map(lambda n: data[:n])))
    return name, data


serial = itertools.count()


@FUZZ
@given(files=st.lists(corpus_file(), max_size=4), max_len=st.integers(5, 40), valid=st.sampled_from([0, 0.1, 0.5]),
       shard=st.integers(1, 8))
def test_build_dataset_never_crashes(tmp_path, tokenizer, files, max_len, valid, shard):
    root = tmp_path / f"case{next(serial)}"
    corpus, out = root / "corpus", root / "out" / "data"
    corpus.mkdir(parents=True)
    (root / "out").mkdir()
    for name, data in files:
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_bytes(data)
    result = check(build_dataset, corpus, tokenizer=tokenizer, out_dir=out, max_seq_length=max_len,
                   valid_fraction=valid, shard_examples=shard, progress=False)
    if result is None:
        assert list((root / "out").iterdir()) == [], "a failed build leaves nothing behind"
        return
    manifest = result
    tok = load_tokenizer(tokenizer)
    tok.encode_special_tokens = True  # "[SEP]" written in the text is text
    documents = list(iter_documents(find_corpus_files([corpus])))
    assert manifest["source"]["num_documents"] == len(documents)
    special = manifest["special_ids"]
    expected = sum(len(tok.encode(s, add_special_tokens=False).ids) for d in documents for s in d)
    found = 0
    for split in manifest["splits"].values():
        for s in split["shards"]:
            ids = np.load(out / s["input_ids"])
            assert ids.shape == (s["num_examples"], max_len) and (ids < manifest["vocab_size"]).all()
            for row in ids.tolist():
                n = sum(t != special["pad"] for t in row)
                # [CLS] A [SEP] (B [SEP]), then padding only: no special token comes from the text itself.
                assert row[0] == special["cls"] and row[n - 1] == special["sep"] and row.count(special["cls"]) == 1
                assert row[n:] == [special["pad"]] * (max_len - n) and row.count(special["sep"]) in (1, 2)
                assert special["mask"] not in row
                found += n - 1 - row.count(special["sep"])
    assert found == expected, "every token of the corpus is in exactly one example"


# --------------------------------------------------------------------------- regressions found by the fuzzers

@pytest.mark.parametrize("line, words", [
    pytest.param('{"text": "ok \\ud800 here"}', "surrogate", id="lone-surrogate"),  # was a TypeError from the tokenizer
    pytest.param("[" * 100_000, "nested too deeply", id="deep-nesting"),           # was a RecursionError from json.loads
])
def test_jsonl_regressions(tmp_path, tokenizer, line, words):
    path = tmp_path / "corpus" / "bad.jsonl"
    path.parent.mkdir()
    path.write_text('{"text": "the whale"}\n' + line + "\n")
    for run in (lambda: read(path),
                lambda: build_dataset([path], tokenizer, tmp_path / "data", progress=False),
                lambda: train_tokenizer([path], 50, tmp_path / "tok", progress=False)):
        with pytest.raises(UserError) as e:
            run()
        message = str(e.value)
        assert f"{path}:2:" in message and words in message and "\n" not in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"], "nothing half-written"


def test_surrogate_pair_escape_is_one_character(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text('{"text": "smile \\ud83d\\ude00"}\n')
    assert list(iter_documents([path])) == [["smile \U0001F600"]]
