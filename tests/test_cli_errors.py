"""Bad input through the real command line: one line on stderr naming the problem, exit 2, no traceback,
nothing half-written."""

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

VOCAB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vocab" / "bert-base-uncased-vocab.txt"


def run(*args):
    return subprocess.run([sys.executable, "-m", "electra", *map(str, args), "--quiet"], capture_output=True, text=True)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def vocab(tmp_path):
    path = tmp_path / "vocab.txt"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(97, 123)] + ["the", "cat"]
    path.write_text("\n".join(words) + "\n")
    return path


@pytest.mark.parametrize("name,content,needle", [
    ("empty.txt", b"", "no text"),
    ("blank.txt", b"\n\n  \n", "no text"),
    ("binary.txt", b"\x00\x01\x02ELF\x00\x00" * 50, "binary.txt:1"),
    ("latin1.txt", "caf\u00e9 au lait\n".encode("latin-1"), "latin1.txt:1"),
    ("bad.jsonl", b'{"text": "fine"}\n{"text": broken\n', "bad.jsonl:2"),
    ("notext.jsonl", b'{"body": "no text field"}\n', "notext.jsonl:1"),
])
def test_data_build_rejects_bad_corpora(tmp_path, vocab, name, content, needle):
    corpus = tmp_path / name
    corpus.write_bytes(content)
    out = tmp_path / "data"
    assert_one_line_error(run("data", "build", "--input", corpus, "--tokenizer", vocab, "--out", out), needle)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left


def test_corrupt_gzip_is_named(tmp_path, vocab):
    corpus = tmp_path / "c.txt.gz"
    corpus.write_bytes(gzip.compress(b"hello world\n" * 100)[:40])
    assert_one_line_error(run("data", "build", "--input", corpus, "--tokenizer", vocab, "--out", tmp_path / "d"),
                          "c.txt.gz")


@pytest.mark.parametrize("make,needle", [
    (lambda d: d / "missing-vocab.txt", "missing-vocab.txt"),
    (lambda d: (d / "nomask.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n") and d / "nomask.txt", "[MASK]"),
    (lambda d: (d / "tokenizer.json").write_text("{not json") and d / "tokenizer.json", "tokenizer.json"),
])
def test_data_build_rejects_bad_tokenizers(tmp_path, make, needle):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat .\n")
    assert_one_line_error(run("data", "build", "--input", corpus, "--tokenizer", make(tmp_path), "--out",
                              tmp_path / "d"), needle)
    assert not (tmp_path / "d").exists()


def test_tokenizer_train_rejects_missing_and_unknown_files(tmp_path):
    assert_one_line_error(run("tokenizer", "train", "--input", tmp_path / "nope", "--out", tmp_path / "t"), "nope")
    (tmp_path / "a.pdf").write_bytes(b"%PDF")
    assert_one_line_error(run("tokenizer", "train", "--input", tmp_path / "a.pdf", "--out", tmp_path / "t"), "a.pdf")
    assert not (tmp_path / "t").exists()


def test_export_of_a_folder_that_is_not_a_run(tmp_path):
    assert_one_line_error(run("export", tmp_path, "--out", tmp_path / "hf"), "not a pre-training run")


@pytest.mark.skipif(not VOCAB.is_file(), reason="../shared/data is not here")
def test_real_vocab_builds(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("The cat sat on the mat.\nIt was happy.\n\nA new document starts here.\nAnd ends.\n")
    proc = run("data", "build", "--input", corpus, "--tokenizer", VOCAB, "--out", tmp_path / "d")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d" / "manifest.json").is_file()
