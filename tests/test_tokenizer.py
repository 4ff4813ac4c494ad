"""WordPiece training, loading and saving (electra/data/tokenizer.py), checked against transformers."""

import gzip
import itertools
import json
import shutil
from pathlib import Path

import pytest

from electra.data.tokenizer import (SPECIAL_TOKENS, load_tokenizer, save_tokenizer, special_token_ids,
                                    train_tokenizer)
from electra.errors import UserError

transformers = pytest.importorskip("transformers")

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BERT_VOCAB = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
MOBY = SHARED / "corpus" / "moby_dick.txt.gz"

TRICKY = [
    "Call me Ishmael. Some years ago - never mind how long precisely -",
    "Hello wörld, [MASK] is unaffable: Ünïcödé CAFÉ naïve ﬁ ½ ™ 中文字 \x01 tab\there",
    "a" * 150 + " " + "whale" * 30,  # longer than max_input_chars_per_word: one [UNK]
    "[CLS] already [SEP] specials [PAD] in text",
    "",
]


def sample_lines() -> list[str]:
    """Real text when ../shared/data is there (a slice of Moby-Dick), else a small synthetic text."""
    if MOBY.is_file():
        with gzip.open(MOBY, "rt", encoding="utf-8") as f:
            return [line.strip() for line in itertools.islice(f, 3000)]
    # enough distinct words (syllable combinations) that a 1000-entry vocabulary fills up
    syllables = "ka lo mi tu re sa vo ne pi da gu fe".split()
    words = [a + b + c for a in syllables for b in syllables for c in syllables]
    common = "the whale ship sea captain ahab white water boat harpoon deck night voyage ocean".split()
    lines = []
    for i in range(2000):
        line = [words[(i * 37 + j * 11) % len(words)] if j % 2 else common[(i + j) % len(common)] for j in range(12)]
        lines.append(" ".join(line).capitalize() + (" The Whale." if i % 3 else "."))
    return lines


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "slice.txt"
    path.write_text("\n".join(sample_lines()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tok"
    train_tokenizer([corpus], 1000, out, progress=False)
    return out


def hf_ids(hf, texts, pair=None):
    return [hf(t, pair)["input_ids"] if pair else hf(t)["input_ids"] for t in texts]


def hf_from_vocab(vocab: Path, tmp_path: Path):
    """transformers' tokenizer for a bare vocab.txt (a folder holding only it: works in transformers 4 and 5)."""
    folder = tmp_path / "hf_vocab_only"
    folder.mkdir()
    shutil.copy(vocab, folder / "vocab.txt")
    return transformers.ElectraTokenizerFast.from_pretrained(folder)


# --------------------------------------------------------------------------- training

def test_trained_tokenizer_files_and_specials(trained):
    assert sorted(p.name for p in trained.iterdir()) == ["special_tokens_map.json", "tokenizer.json",
                                                        "tokenizer_config.json", "tokenizer_training.json",
                                                        "vocab.txt"]
    tok = load_tokenizer(trained)
    assert special_token_ids(tok) == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert 200 < tok.get_vocab_size() <= 1000
    vocab = (trained / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[:5] == SPECIAL_TOKENS and len(vocab) == tok.get_vocab_size()
    assert all(tok.token_to_id(t) == i for i, t in enumerate(vocab))
    config = json.loads((trained / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "ElectraTokenizer" and config["do_lower_case"] is True
    assert config["model_max_length"] == 512 and config["mask_token"] == "[MASK]"


def test_trained_tokenizer_matches_transformers(trained):
    ours = load_tokenizer(trained)
    hf = transformers.ElectraTokenizerFast.from_pretrained(trained)
    texts = TRICKY + sample_lines()[:300]
    assert [e.ids for e in ours.encode_batch(texts)] == hf_ids(hf, texts)
    pair = ours.encode("The whale", "the sea")
    assert pair.ids == hf("The whale", "the sea")["input_ids"]
    assert pair.type_ids == hf("The whale", "the sea")["token_type_ids"]
    assert pair.tokens[0] == "[CLS]" and pair.tokens.count("[SEP]") == 2
    assert hf.mask_token_id == 4 and hf.pad_token_id == 0
    assert ours.decode(ours.encode("the whale ship").ids) == "the whale ship"


def test_cased_tokenizer_matches_transformers(corpus, tmp_path):
    train_tokenizer([corpus], 600, tmp_path / "cased", lowercase=False, progress=False)
    ours = load_tokenizer(tmp_path / "cased")
    hf = transformers.ElectraTokenizerFast.from_pretrained(tmp_path / "cased")
    assert json.loads((tmp_path / "cased" / "tokenizer_config.json").read_text())["do_lower_case"] is False
    assert ours.encode("Whale").tokens != ours.encode("whale").tokens
    texts = TRICKY + sample_lines()[:100]
    assert [e.ids for e in ours.encode_batch(texts)] == hf_ids(hf, texts)


def test_train_refuses_non_empty_out_dir_and_cleans_up_on_error(corpus, tmp_path):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "x").write_text("keep")
    with pytest.raises(UserError, match="tok: already exists"):
        train_tokenizer([corpus], 100, out, progress=False)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n" * 2000 + b"\xff\xfe broken\n")
    with pytest.raises(UserError, match="bad.txt:2001: not UTF-8"):
        train_tokenizer([bad], 100, tmp_path / "new", progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(UserError, match="empty.txt: the corpus has no text"):
        train_tokenizer([empty], 100, tmp_path / "new", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "empty.txt", "tok"]


# --------------------------------------------------------------------------- the real BERT vocabulary

@pytest.mark.skipif(not BERT_VOCAB.is_file(), reason="../shared/data not present")
def test_bert_vocab_matches_transformers(tmp_path):
    tok = load_tokenizer(BERT_VOCAB)
    assert tok.get_vocab_size() == 30522
    assert special_token_ids(tok) == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    hf = hf_from_vocab(BERT_VOCAB, tmp_path)
    texts = TRICKY + sample_lines()[:300]
    assert [e.ids for e in tok.encode_batch(texts)] == hf_ids(hf, texts)
    # Saved and reloaded, by us and by transformers: the same ids again.
    save_tokenizer(tok, tmp_path / "saved")
    hf2 = transformers.ElectraTokenizerFast.from_pretrained(tmp_path / "saved")
    assert hf_ids(hf2, texts) == hf_ids(hf, texts)
    assert (tmp_path / "saved" / "vocab.txt").read_bytes() == BERT_VOCAB.read_bytes()
    assert [e.ids for e in load_tokenizer(tmp_path / "saved").encode_batch(texts)] == hf_ids(hf, texts)


@pytest.mark.skipif(not BERT_VOCAB.is_file(), reason="../shared/data not present")
def test_vocab_folder_with_cased_config(tmp_path):
    shutil.copy(BERT_VOCAB, tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    tok = load_tokenizer(tmp_path)
    assert tok.encode("Whale", add_special_tokens=False).ids != tok.encode("whale", add_special_tokens=False).ids
    assert load_tokenizer(tmp_path / "vocab.txt").encode("Whale").ids == tok.encode("Whale").ids


# --------------------------------------------------------------------------- bad tokenizers

def test_vocab_without_mask_is_refused(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\nwhale\n")
    with pytest.raises(UserError) as e:
        load_tokenizer(vocab)
    assert str(e.value) == (f"{vocab}: vocabulary has no [MASK] token; "
                            "ELECTRA needs [PAD] [UNK] [CLS] [SEP] [MASK]")


def test_tokenizer_json_without_specials_is_refused(trained, tmp_path):
    spec = json.loads((trained / "tokenizer.json").read_text())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "[MASK]"]
    del spec["model"]["vocab"]["[MASK]"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match=r"tokenizer.json: vocabulary has no \[MASK\] token"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("name, content, message", [
    ("tokenizer.json", b'{"model": {"type": "WordPiece"', "not a valid tokenizer.json"),
    ("tokenizer.json", b'{"version": "1.0"}', "not a valid tokenizer.json"),
    ("tokenizer.json", b"\x00\x01binary", "not a valid tokenizer.json"),
    ("vocab.txt", b"[PAD]\n\xff\xfe\n", "not UTF-8"),
    ("vocab.txt", b"", "empty vocabulary"),
    ("vocab.txt", b"[PAD]\n[UNK]\n[PAD]\n", ":3: token '[PAD]' repeats line 1"),
    ("model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}\x00\x00", "not UTF-8"),
])
def test_malformed_tokenizer_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as e:
        load_tokenizer(path)
    assert str(path) in str(e.value) and message in str(e.value) and "\n" not in str(e.value)


def test_missing_tokenizer_paths(tmp_path):
    with pytest.raises(UserError, match="missing: no such file or folder"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(UserError, match="has no tokenizer.json or vocab.txt"):
        load_tokenizer(tmp_path)


def test_loaded_tokenizer_never_truncates(trained, tmp_path):
    spec = json.loads((trained / "tokenizer.json").read_text())
    spec["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    tok = load_tokenizer(tmp_path / "tokenizer.json")
    assert len(tok.encode("the " * 50, add_special_tokens=False).ids) == 50


# --------------------------------------------------------------------------- other scripts: alphabet, held-out lines, casing

def chinese_lines(n_lines: int = 4000, n_chars: int = 3000, length: int = 40, seed: int = 0) -> list[str]:
    """Synthetic Chinese: ``n_chars`` distinct CJK ideographs drawn with Zipfian frequencies (as characters are
    in real text), with Chinese punctuation; far more distinct characters than the old alphabet limit of 1000."""
    import numpy as np
    rng = np.random.default_rng(seed)
    chars = [chr(0x4E00 + i * 6) for i in range(n_chars)]  # within CJK Unified Ideographs
    p = 1.0 / np.arange(1, n_chars + 1)
    p /= p.sum()
    lines = []
    for _ in range(n_lines):
        picks = rng.choice(n_chars, size=length, p=p)
        lines.append("".join(chars[i] for i in picks[:length // 2]) + "，" + "".join(chars[i] for i in picks[length // 2:]) + "。")
    return lines


def test_the_alphabet_follows_the_corpus_so_chinese_keeps_its_characters(tmp_path):
    corpus = tmp_path / "zh.txt"
    corpus.write_text("\n".join(chinese_lines()) + "\n", encoding="utf-8")
    tok = train_tokenizer([corpus], 21128, tmp_path / "tok", progress=False)
    report = json.loads((tmp_path / "tok" / "tokenizer_training.json").read_text())
    assert report["characters_frequent"] > 2000 and report["alphabet_limit"] == report["characters_frequent"]
    assert report["held_out_lines"] == 40  # every 100th of 4,000 lines
    assert report["unk_rate"] < 0.001, report  # a fixed limit of 1000 characters left ~10% [UNK] here
    assert 0.9 < report["chars_per_token"] <= 1.0  # one token per character (punctuation included)
    single = [t for t in tok.get_vocab() if len(t) == 1 and 0x4E00 <= ord(t) <= 0x9FFF]
    assert len(single) == report["characters_frequent"] - 2  # every frequent ideograph; "，" and "。" besides
    # transformers tokenizes the same way with the saved folder
    hf = transformers.ElectraTokenizerFast.from_pretrained(tmp_path / "tok")
    text = chinese_lines(5, seed=1)
    assert [e.ids for e in tok.encode_batch(text)] == hf_ids(hf, text)


def test_the_alphabet_takes_at_most_half_the_vocabulary(tmp_path):
    corpus = tmp_path / "zh.txt"
    corpus.write_text("\n".join(chinese_lines(2000, n_chars=600)) + "\n", encoding="utf-8")
    train_tokenizer([corpus], 405, tmp_path / "tok", progress=False)
    report = json.loads((tmp_path / "tok" / "tokenizer_training.json").read_text())
    assert report["characters_frequent"] > 500 and report["alphabet_limit"] == 200  # (405 - 5 specials) / 2
    assert report["unk_rate"] > 0.01  # the rarest characters do become [UNK], and the CLI says so (below)


def test_the_held_out_lines_are_kept_out_of_training(tmp_path):
    lines = ["the whale swims in the deep sea"] * 300
    lines[99] = lines[199] = "zyzzyva zyzzyva zyzzyva"  # only in held-out lines (the 100th and 200th)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tok = train_tokenizer([corpus], 60, tmp_path / "tok", min_frequency=1, progress=False)
    report = json.loads((tmp_path / "tok" / "tokenizer_training.json").read_text())
    assert report["held_out_lines"] == 3
    assert "z" not in tok.get_vocab() and "y" not in tok.get_vocab()  # never seen in training
    assert report["unk_rate"] == pytest.approx(6 / (6 + 7))  # 2 x 3 [UNK] words; the third line has 7 words


@pytest.mark.parametrize("text, script", [
    ("한국어 텍스트는 자모로 분해되면 안 됩니다", "Hangul"),
    ("ガギグゲゴ ダヂヅデド パピプペポ のテキスト", "Katakana"),
])
def test_uncased_training_is_refused_where_it_alters_letters_and_cased_round_trips(tmp_path, text, script):
    import subprocess
    import sys
    corpus = tmp_path / "c.txt"
    corpus.write_text("The plain English part of the corpus.\n" + f"{text}\n" * 200, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "electra", "tokenizer", "train", "--input", str(corpus),
                           "--vocab-size", "200", "--out", str(tmp_path / "tok"), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert f"{corpus}:2: uncased normalisation would change" in proc.stderr and script in proc.stderr
    assert "--cased" in proc.stderr and not (tmp_path / "tok").exists()
    # --cased: the text comes back unchanged
    tok = train_tokenizer([corpus], 200, tmp_path / "cased", lowercase=False, progress=False)
    assert tok.decode(tok.encode(text).ids) == text
    # --force-uncased: trained, and the report says how much it altered
    train_tokenizer([corpus], 200, tmp_path / "forced", progress=False, force_uncased=True)
    assert json.loads((tmp_path / "forced" / "tokenizer_training.json").read_text())["uncased_altered_share"] > 0.5


def test_latin_accents_and_a_little_foreign_text_stay_uncased(tmp_path):
    from electra.data.tokenizer import uncased_alteration
    assert uncased_alteration("é") is None and uncased_alteration("Ü") is None and uncased_alteration("ά") is None
    assert uncased_alteration("中") is None and uncased_alteration("a") is None
    assert uncased_alteration("ガ") == "カ" and uncased_alteration("한") == "\u1112\u1161\u11ab"
    corpus = tmp_path / "c.txt"
    corpus.write_text("Café naïve Ünïcödé résumé " * 5 + "\n" * 2 + "the whale " * 250 + "ガ\n", encoding="utf-8")
    train_tokenizer([corpus], 100, tmp_path / "tok", progress=False)  # one kana among ~2,300 characters: allowed


def test_a_chinese_bert_vocab_txt_tokenizes_as_transformers_does(tmp_path):
    chars = sorted({c for line in chinese_lines(50) for c in line})
    vocab = tmp_path / "zh" / "vocab.txt"
    vocab.parent.mkdir()
    vocab.write_text("\n".join(SPECIAL_TOKENS + ["##" + c for c in chars[:50]] + chars + ["the", "##s"]) + "\n",
                     encoding="utf-8")
    tok = load_tokenizer(vocab)
    hf = hf_from_vocab(vocab, tmp_path)
    texts = chinese_lines(20) + ["中文 the ELECTRA 模型，全角！（测试）", "\ufeff" + chinese_lines(1)[0]]
    assert [e.ids for e in tok.encode_batch(texts)] == hf_ids(hf, texts)


def test_the_cli_prints_the_held_out_rate_and_what_to_do(tmp_path, capsys):
    from electra.cli import main
    corpus = tmp_path / "zh.txt"
    corpus.write_text("\n".join(chinese_lines(2000, n_chars=600)) + "\n", encoding="utf-8")
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "405", "--out",
                 str(tmp_path / "tok"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "held-out slice (20 lines" in out and "[UNK]" in out and "characters per token" in out
    assert "the alphabet keeps the 200 most frequent" in out and "raise --vocab-size" in out
