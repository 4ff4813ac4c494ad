"""Corpus reading, example packing and data-folder building (electra/data/corpus.py)."""

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from electra.data.corpus import build_dataset, is_held_out, pack_examples
from electra.data.sources import CorpusReader, find_corpus_files, iter_documents
from electra.data.tokenizer import load_tokenizer, train_tokenizer
from electra.errors import UserError

CLS, SEP = 1, 2
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BERT_VOCAB = SHARED / "vocab" / "bert-base-uncased-vocab.txt"


# --------------------------------------------------------------------------- packing

def check_examples(examples, documents, max_len):
    """The packer's contract: text preserved in order, shapes and specials right."""
    flat = []
    for ids, types in examples:
        assert len(ids) == len(types) <= max_len
        assert ids[0] == CLS and ids[-1] == SEP
        seps = [i for i, t in enumerate(ids) if t == SEP]
        assert len(seps) in (1, 2)
        assert seps[0] >= 2, "segment A must hold at least one real token"
        if len(seps) == 2:
            assert seps[1] - seps[0] >= 2, "segment B, when present, is not empty"
        # types: 0 on [CLS] A [SEP], 1 on B [SEP]
        assert types == [0] * (seps[0] + 1) + [1] * (len(ids) - seps[0] - 1)
        flat += [t for i, t in enumerate(ids) if i != 0 and i not in seps]
    assert flat == [t for doc in documents for sentence in doc for t in sentence]


token = st.integers(min_value=3, max_value=50)  # never the special ids
sentence = st.lists(token, min_size=0, max_size=80)
document = st.lists(sentence, min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(documents=st.lists(document, max_size=6), max_len=st.integers(5, 64), seed=st.integers(0, 2**32))
def test_packing_preserves_every_token(documents, max_len, seed):
    examples = list(pack_examples(documents, max_len, CLS, SEP, random.Random(seed)))
    check_examples(examples, documents, max_len)


def test_examples_do_not_span_documents():
    docs = [[[10] * 3], [[20] * 3], [[30] * 200]]
    examples = list(pack_examples(docs, 16, CLS, SEP, random.Random(0)))
    check_examples(examples, docs, 16)
    assert [e[0][1:-1] for e in examples[:2]] == [[10] * 3, [20] * 3]
    assert all(set(e[0]) <= {CLS, SEP, 30} for e in examples[2:])


def test_long_sentence_is_split_not_truncated():
    docs = [[list(range(3, 303))]]
    examples = list(pack_examples(docs, 32, CLS, SEP, random.Random(1)))
    check_examples(examples, docs, 32)
    assert len(examples) >= 300 // 30
    # Long pieces are split between A and B too, so B segments still appear.
    assert sum(e[0].count(SEP) == 2 for e in examples) >= len(examples) // 2


def test_short_sentences_fill_examples_and_split_at_sentence_boundaries():
    # Sentences of 10 tokens, each its own id: a two-segment example's A ends at a sentence end
    # unless a sentence was cut for length.
    docs = [[[100 + i] * 10 for i in range(400)]]
    examples = list(pack_examples(docs, 128, CLS, SEP, random.Random(2)))
    check_examples(examples, docs, 128)
    at_boundary = 0
    pairs = [ids for ids, _ in examples if ids.count(SEP) == 2]
    for ids in pairs:
        cut = ids.index(SEP)
        at_boundary += ids[cut - 1] != ids[cut + 1]
    assert at_boundary / len(pairs) > 0.9


def test_packing_statistics_match_google():
    """~10% single-segment examples, ~5% shorter targets, A/B split near the middle."""
    max_len = 64
    docs = [[[7] for _ in range(200_000)]]  # one-token sentences: lengths reflect the targets exactly
    examples = list(pack_examples(docs, max_len, CLS, SEP, random.Random(3)))[:-1]  # last: document end
    n = len(examples)
    single = sum(ids.count(SEP) == 1 for ids, _ in examples) / n
    short = sum(len(ids) < max_len - 1 for ids, _ in examples) / n
    assert 0.08 < single < 0.12
    assert 0.03 < short < 0.07  # random target below the maximum (a few draws land near it)
    a_share = [ids.index(SEP) / len(ids) for ids, _ in examples if ids.count(SEP) == 2]
    assert 0.4 < np.mean(a_share) < 0.6


def test_packing_is_deterministic_given_rng():
    docs = [[[5] * 7, [6] * 30, [7] * 3] * 20]
    a = list(pack_examples(docs, 32, CLS, SEP, random.Random(9)))
    b = list(pack_examples(docs, 32, CLS, SEP, random.Random(9)))
    assert a == b


# --------------------------------------------------------------------------- reading

def write(path: Path, text: str, compress: bool = False) -> Path:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_reads_txt_gz_and_jsonl(tmp_path):
    write(tmp_path / "a.txt", "\ufeffOne.\r\n  Two.  \n\n\n   \nThree.\n")
    write(tmp_path / "b.txt.gz", "Four.\n\nFive.\nSix.", compress=True)
    rows = [{"text": "Seven.\n\nEight.\n"}, {"text": ""}, {"text": "Nine.", "id": 3}]
    write(tmp_path / "c.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    write(tmp_path / "d.jsonl.gz", json.dumps({"text": "Ten."}) + "\n", compress=True)
    (tmp_path / "notes.md").write_text("ignored: not a corpus suffix")
    files = find_corpus_files([tmp_path])
    assert [f.name for f in files] == ["a.txt", "b.txt.gz", "c.jsonl", "d.jsonl.gz"]
    docs = list(iter_documents(files))
    assert docs == [["One.", "Two."], ["Three."], ["Four."], ["Five.", "Six."], ["Seven.", "Eight."], ["Nine."],
                    ["Ten."]]
    reader = CorpusReader(files)
    list(reader)
    assert (reader.num_documents, reader.num_lines) == (7, 10)
    assert reader.bytes_read() == reader.total_bytes


def test_find_corpus_files_recurses_sorted_and_dedupes(tmp_path):
    (tmp_path / "z").mkdir()
    (tmp_path / "a").mkdir()
    for p in ("z/1.txt", "a/2.jsonl", "a/1.txt.gz", "0.txt"):
        (tmp_path / p).write_text("x")
    files = find_corpus_files([tmp_path, tmp_path / "0.txt"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["0.txt", "a/1.txt.gz", "a/2.jsonl", "z/1.txt"]


@pytest.mark.parametrize("name, content, where", [
    ("bin.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ":1:"),
    ("latin1.txt", "fine\ncaf\xe9\n".encode("latin-1"), ":2: not UTF-8"),
    ("utf16.txt", "hello".encode("utf-16"), ":1: not UTF-8"),
    ("bad.jsonl", b'{"text": "ok"}\n{"text": "unclosed\n', ":2: not valid JSON"),
    ("notext.jsonl", b'{"text": "ok"}\n\n{"body": "x"}\n', ":3: no \"text\""),
    ("list.jsonl", b'["text"]\n', ":1: no \"text\""),
    ("fake.txt.gz", b"this is not gzip", "cannot read"),
    ("cut.txt.gz", gzip.compress(b"a long enough line\n" * 50)[:-20], "cannot read"),
])
def test_bad_input_names_file_and_line(tmp_path, name, content, where):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as e:
        list(iter_documents(find_corpus_files([path])))
    message = str(e.value)
    assert str(path) in message and where in message and "\n" not in message


@pytest.mark.parametrize("make", [
    lambda d: d / "missing.txt",
    lambda d: (d / "x.xml").write_text("<a/>") and d / "x.xml",
    lambda d: (d / "empty").mkdir() or d / "empty",
])
def test_find_corpus_files_errors(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(UserError, match=str(path).replace("\\", "\\\\")):
        find_corpus_files([path])


# --------------------------------------------------------------------------- building a data folder

WORDS = ("the whale ship sea captain ahab ishmael white water boat men harpoon deck night old long great "
         "voyage ocean wind sail").split()


def make_corpus(folder: Path, documents: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir()
    docs = []
    for _ in range(documents):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))) + "." for _ in range(rng.randint(1, 8))]
        docs.append("\n".join(lines))
    half = len(docs) // 2
    write(folder / "part1.txt", "\n\n".join(docs[:half]) + "\n")
    write(folder / "part2.txt.gz", "\n\n".join(docs[half:]) + "\n", compress=True)
    return folder


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("tok")
    corpus = make_corpus(base / "corpus", documents=30, seed=1)
    train_tokenizer([corpus], 200, base / "tok", min_frequency=1, progress=False)
    return base / "tok"


def read_split(out: Path, split: dict, max_len: int):
    rows = []
    for shard in split["shards"]:
        ids = np.load(out / shard["input_ids"], mmap_mode="r")
        types = np.load(out / shard["token_type_ids"], mmap_mode="r")
        assert ids.shape == types.shape == (shard["num_examples"], max_len)
        assert ids.dtype == np.uint16 and types.dtype == np.uint8
        rows += list(zip(ids.tolist(), types.tolist()))
    assert len(rows) == split["num_examples"]
    return rows


def test_build_dataset_layout_and_round_trip(tmp_path, small_tokenizer):
    corpus = make_corpus(tmp_path / "corpus", documents=60)
    out, max_len, seed = tmp_path / "data", 24, 7
    m = build_dataset([corpus], small_tokenizer, out, max_seq_length=max_len, valid_fraction=0.1, seed=seed,
                      shard_examples=16, progress=False)
    assert json.loads((out / "manifest.json").read_text()) == m
    assert m["format"] == "electra-pretraining-data" and m["version"] == 1 and m["seed"] == seed
    assert m["max_seq_length"] == max_len
    tok = load_tokenizer(out / "tokenizer")
    assert m["vocab_size"] == tok.get_vocab_size()
    assert m["special_ids"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert m["source"]["num_documents"] == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "data"], "no temporary folder left behind"

    # Expected text tokens of each split, recomputed document by document.
    files = find_corpus_files([corpus])
    expected = {"train": [], "valid": []}
    for i, doc in enumerate(iter_documents(files)):
        split = "valid" if is_held_out(i, seed, 0.1) else "train"
        expected[split] += [t for line in doc for t in tok.encode(line, add_special_tokens=False).ids]
    assert expected["valid"], "the validation split holds at least one document"
    for name, split in m["splits"].items():
        rows = read_split(out, split, max_len)
        assert len(split["shards"]) == -(-split["num_examples"] // 16)
        text, real = [], 0
        for ids, types in rows:
            n = sum(t != 0 for t in ids)
            assert all(t == 0 for t in ids[n:]) and all(t == 0 for t in types[n:]), "padding at the end only"
            assert ids[0] == 2 and ids[n - 1] == 3
            text += [t for t in ids[:n] if t not in (2, 3)]
            real += n
        assert text == expected[name]
        assert split["num_tokens"] == real


def test_build_dataset_loads_in_the_loader(tmp_path, small_tokenizer):
    from electra.data.loader import PretrainingData

    corpus = make_corpus(tmp_path / "corpus", documents=10)
    build_dataset([corpus], small_tokenizer, tmp_path / "data", max_seq_length=32, progress=False)
    data = PretrainingData(tmp_path / "data")
    assert data.num_examples("train") > 0 and data.num_examples("valid") > 0
    ids, types = data.examples("train", np.arange(data.num_examples("train")))
    assert (ids[:, 0] == 2).all()


def test_build_dataset_refuses_non_empty_out_dir(tmp_path, small_tokenizer):
    corpus = make_corpus(tmp_path / "corpus", documents=3)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="data: already exists"):
        build_dataset([corpus], small_tokenizer, tmp_path / "data", progress=False)
    assert (tmp_path / "data" / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    build_dataset([corpus], small_tokenizer, tmp_path / "empty", progress=False)
    assert (tmp_path / "empty" / "manifest.json").is_file()


def test_build_dataset_empty_corpus_and_bad_file_leave_nothing(tmp_path, small_tokenizer):
    (tmp_path / "corpus").mkdir()
    write(tmp_path / "corpus" / "blank.txt", "\n   \n\n")
    with pytest.raises(UserError, match="no text"):
        build_dataset([tmp_path / "corpus"], small_tokenizer, tmp_path / "data", progress=False)
    (tmp_path / "corpus" / "blank.txt").write_bytes(b"good line\n\nbad \xff line\n")
    with pytest.raises(UserError, match="blank.txt:3: not UTF-8"):
        build_dataset([tmp_path / "corpus"], small_tokenizer, tmp_path / "data", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


def test_build_dataset_real_text_with_bert_vocab(tmp_path):
    source = SHARED / "corpus" / "moby_dick.txt.gz"
    if not (source.is_file() and BERT_VOCAB.is_file()):
        pytest.skip("../shared/data not present")
    m = build_dataset([source], BERT_VOCAB, tmp_path / "data", max_seq_length=128, progress=False)
    assert m["vocab_size"] == 30522
    assert m["special_ids"] == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    assert m["splits"]["valid"]["num_examples"] > 0
    ids = np.load(tmp_path / "data" / m["splits"]["train"]["shards"][0]["input_ids"], mmap_mode="r")
    lengths = (ids != 0).sum(1)
    assert (lengths == 128).mean() > 0.8  # packed full, like Google's builder
    assert m["splits"]["train"]["num_tokens"] + m["splits"]["valid"]["num_tokens"] > 250_000
