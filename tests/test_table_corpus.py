"""Corpus input beyond text files: parquet, CSV/TSV and `datasets` folders build the same
examples as the same text in a .txt file; a wrong column lists the right ones; a missing extra is one line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from electra.data.corpus import build_dataset
from electra.data.loader import PretrainingData
from electra.data.sources import CorpusReader, find_corpus_files, iter_documents
from electra.data.tokenizer import train_tokenizer
from electra.errors import UserError

# Documents (rows): several lines each, quotes, commas, tabs and CJK, so that CSV quoting matters.
DOCUMENTS = [
    "Call me Ishmael.\nSome years ago, never mind how long precisely,\nI thought I would sail about a little.",
    'The "Pequod" sailed; the whale, white and vast, waited.',
    "今天天气很好，我们去公园吧！\nA second line\twith a tab.",
    "",  # an empty row: no document, as an empty JSONL text is none
    "It is a way I have of driving off the spleen.\n\nAnd regulating the circulation.",
] * 40


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    txt = root / "corpus.txt"
    txt.write_text("\n\n".join("\n".join(line for line in d.splitlines() if line.strip())
                               for d in DOCUMENTS if d) + "\n", encoding="utf-8")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    table = pa.table({"id": list(range(len(DOCUMENTS))), "body": DOCUMENTS})
    pq.write_table(table, root / "corpus.parquet", row_group_size=37)  # several row groups
    import csv
    for name, delimiter in (("corpus.csv", ","), ("corpus.tsv", "\t")):
        with open(root / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter=delimiter)
            writer.writerow(["id", "body"])
            writer.writerows(enumerate(DOCUMENTS))
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"id": list(range(len(DOCUMENTS))), "body": DOCUMENTS})
    ds.save_to_disk(str(root / "ds"))
    datasets.DatasetDict({"train": ds, "test": ds.select(range(3))}).save_to_disk(str(root / "dsdict"))
    train_tokenizer([txt], 300, root / "tok", progress=False)
    return root


@pytest.mark.parametrize("name", ["corpus.parquet", "corpus.csv", "corpus.tsv", "ds", "dsdict"])
def test_a_table_builds_the_same_examples_as_the_same_text(sources, name, tmp_path):
    reader_docs = []
    doc = []
    for item in CorpusReader(find_corpus_files([sources / name]), text_column="body"):
        if item is None:
            reader_docs.append(doc)
            doc = []
        else:
            doc.append(item)
    assert reader_docs == list(iter_documents([sources / "corpus.txt"]))
    ref = build_dataset([sources / "corpus.txt"], sources / "tok", tmp_path / "ref", max_seq_length=32,
                        progress=False)
    got = build_dataset([sources / name], sources / "tok", tmp_path / "got", max_seq_length=32, progress=False,
                        text_column="body")
    assert got["splits"] == ref["splits"]
    a, b = PretrainingData(tmp_path / "ref"), PretrainingData(tmp_path / "got")
    for split in ("train", "valid"):
        idx = np.arange(a.num_examples(split))
        assert all(np.array_equal(x, y) for x, y in zip(a.examples(split, idx), b.examples(split, idx)))


def test_the_tokenizer_trains_on_a_table_too(sources, tmp_path):
    """The same lines reach the trainer (its merges break ties differently from run to run, so the vocabularies
    themselves are not compared)."""
    train_tokenizer([sources / "corpus.parquet"], 300, tmp_path / "tok", progress=False, text_column="body")
    keys = ("characters_seen", "characters_frequent", "alphabet_limit", "held_out_lines")
    report = [json.loads((d / "tokenizer_training.json").read_text()) for d in (tmp_path / "tok", sources / "tok")]
    assert [report[0][k] for k in keys] == [report[1][k] for k in keys] and report[0]["held_out_lines"] == 3


def test_folders_are_searched_for_parquet_but_not_csv(sources, tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    for name in ("corpus.parquet", "corpus.csv"):
        (folder / name).write_bytes((sources / name).read_bytes())
    assert [p.name for p in find_corpus_files([folder])] == ["corpus.parquet"]
    assert find_corpus_files([sources / "ds"]) == [sources / "ds"]  # a datasets folder is one source


@pytest.mark.parametrize("name", ["corpus.parquet", "corpus.csv", "ds"])
def test_a_wrong_column_lists_the_columns(sources, name):
    with pytest.raises(UserError, match=r"no column 'text'; its columns are id, body; pass --text-column NAME"):
        list(CorpusReader([sources / name]))


def test_the_train_split_of_a_dataset_dict_and_a_dict_without_one(sources, tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_from_disk(str(sources / "ds"))
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "nodict"))
    with pytest.raises(UserError, match="without a train split .it has validation.; give the split's folder"):
        list(CorpusReader([tmp_path / "nodict"], text_column="body"))


def test_a_column_that_is_not_text_is_refused_with_its_row(sources):
    with pytest.raises(UserError, match=r"corpus.parquet: row 1: column 'id' holds int, not text"):
        list(CorpusReader([sources / "corpus.parquet"], text_column="id"))


def test_a_missing_extra_is_one_line_naming_it(sources, tmp_path):
    code = ("import sys; sys.modules['pyarrow'] = sys.modules['pyarrow.parquet'] = None; "
            "from electra.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "data", "build", "--input", str(sources / "corpus.parquet"),
                           "--tokenizer", str(sources / "tok"), "--out", str(tmp_path / "d"), "--text-column", "body",
                           "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "electra: error: reading parquet files needs pyarrow: pip install 'electra[parquet]' (or pip install pyarrow)"]
    assert not (tmp_path / "d").exists()


def test_csv_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,fine\n2\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.csv:3: 1 fields, no 'text'"):
        list(CorpusReader([bad]))
