"""Chinese whole-word masking: `data build --word-segmenter` stores which tokens begin a word,
and whole_word / span masking select whole words from those flags. The gold segmentation below is ours,
written for these tests (People's Daily style: punctuation is a word)."""

import json
import sys

import numpy as np
import pytest
import torch

from electra.data.corpus import build_dataset
from electra.data.loader import PretrainingData, eval_batches
from electra.data.tokenizer import load_tokenizer, train_tokenizer
from electra.errors import UserError
from electra.pretraining.batches import candidate_mask, cut_into_windows
from electra.pretraining.word_masking import make_selector

GOLD = [
    "我们 喜欢 自然 语言 处理 。",
    "中国 人民 银行 发布 了 新 的 货币 政策 。",
    "今天 北京 的 天气 非常 好 ， 我们 去 公园 散步 吧 。",
    "他 在 大学 里 学习 计算机 科学 和 数学 。",
    "这 本 书 的 作者 是 一位 著名 的 历史学家 。",
    "ELECTRA 模型 用 判别器 检测 被 替换 的 词 。",
    "经济 发展 需要 稳定 的 社会 环境 和 良好 的 国际 合作 。",
    "学生 们 在 图书馆 认真 地 阅读 报纸 和 杂志 。",
]


def corpus_lines(segmented: bool, repeat: int = 12) -> list[str]:
    """Documents of 4 sentences (a blank line between), the gold sentences in rotating order."""
    lines = []
    for r in range(repeat):
        for i in range(4):
            s = GOLD[(r * 3 + i) % len(GOLD)]
            lines.append(s if segmented else s.replace(" ", ""))
        lines.append("")
    return lines


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("zh")
    (root / "plain.txt").write_text("\n".join(corpus_lines(False)) + "\n", encoding="utf-8")
    train_tokenizer([root / "plain.txt"], 400, root / "tok", min_frequency=1, progress=False)
    return root / "tok"


def build(tmp_path, tok_dir, segmented: bool, segmenter: str, **kw) -> PretrainingData:
    corpus = tmp_path / f"corpus-{segmenter}.txt"
    corpus.write_text("\n".join(corpus_lines(segmented)) + "\n", encoding="utf-8")
    out = tmp_path / f"data-{segmenter}"
    build_dataset([corpus], tok_dir, out, max_seq_length=kw.pop("max_seq_length", 32), valid_fraction=0.0,
                  progress=False, word_segmenter=segmenter, **kw)
    return PretrainingData(out)


def stored_stream(data: PretrainingData, special: set[int]) -> tuple[list[int], list[bool]]:
    """Every training token in corpus order (the writer keeps it when nothing is held out), with its flag."""
    idx = np.arange(data.num_examples("train"))
    ids, _ = data.examples("train", idx)
    starts = data.word_starts("train", idx)
    keep = ~np.isin(ids, list(special))
    return ids[keep].tolist(), starts[keep].tolist()


def expected_stream(tok, words_per_line: list[list[str]]) -> tuple[list[int], list[bool]]:
    ids, flags = [], []
    for words in words_per_line:
        for w in words:
            piece = tok.encode(w, add_special_tokens=False).ids
            ids += piece
            flags += [True] + [False] * (len(piece) - 1)
    return ids, flags


def test_gold_segmented_text_stores_the_gold_word_starts(tmp_path, tok_dir):
    data = build(tmp_path, tok_dir, segmented=True, segmenter="spaces")
    assert data.has_word_starts and data.manifest["word_segmenter"] == "spaces"
    tok = load_tokenizer(tok_dir)
    special = set(data.special_ids.values())
    gold = [line.split() for line in corpus_lines(True) if line]
    assert stored_stream(data, special) == expected_stream(tok, gold)
    # the spaces change nothing else: the same tokens as the unsegmented text without a segmenter
    plain = tmp_path / "plain.txt"
    plain.write_text("\n".join(corpus_lines(False)) + "\n", encoding="utf-8")
    build_dataset([plain], tok_dir, tmp_path / "plain", max_seq_length=32, valid_fraction=0.0, progress=False)
    unsegmented = PretrainingData(tmp_path / "plain")
    idx = np.arange(unsegmented.num_examples("train"))
    assert not unsegmented.has_word_starts and unsegmented.word_starts("train", idx) is None
    assert np.array_equal(unsegmented.examples("train", idx)[0], data.examples("train", idx)[0])
    # bit-packed: 32 tokens in 4 bytes per example
    shard = json.loads((tmp_path / "data-spaces" / "manifest.json").read_text())["splits"]["train"]["shards"][0]
    assert np.load(tmp_path / "data-spaces" / shard["word_starts"]).shape == (data.num_examples("train"), 4)


def test_jieba_stores_jieba_words(tmp_path, tok_dir):
    jieba = pytest.importorskip("jieba")
    data = build(tmp_path, tok_dir, segmented=False, segmenter="jieba")
    assert data.manifest["word_segmenter"].startswith("jieba ")
    tok = load_tokenizer(tok_dir)
    words = [[w for w, _, _ in jieba.tokenize(line)] for line in corpus_lines(False) if line]
    assert stored_stream(data, set(data.special_ids.values())) == expected_stream(tok, words)
    # jieba finds multi-character words here: fewer starts than characters
    _, flags = stored_stream(data, set(data.special_ids.values()))
    assert 0.4 < sum(flags) / len(flags) < 0.9


def words_of(starts: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(B, T) word index of each token: a word runs from a stored start to the next, and a [SEP] (or the [CLS]
    of an example that begins inside a word) ends one."""
    after_special = torch.cat([torch.ones_like(candidates[:, :1]), ~candidates[:, :-1]], 1)
    return (candidates & (starts | after_special)).long().cumsum(1)


@pytest.mark.parametrize("masking", ["whole_word", "span"])
@pytest.mark.parametrize("segmenter", ["spaces", "jieba"])
def test_the_masked_units_are_whole_words(tmp_path, tok_dir, masking, segmenter):
    if segmenter == "jieba":
        pytest.importorskip("jieba")
    data = build(tmp_path, tok_dir, segmented=segmenter == "spaces", segmenter=segmenter)
    idx = np.arange(data.num_examples("train"))
    ids, types = data.examples("train", idx)
    starts = torch.from_numpy(data.word_starts("train", idx))
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy((ids != 0).astype(np.int64))}
    candidates = candidate_mask(batch["input_ids"], batch["attention_mask"], data.special_ids)
    # no ## pieces in this vocabulary would say where a Chinese word ends: only the stored starts can
    select = make_selector(masking, 0.15, torch.zeros(data.vocab_size, dtype=torch.bool))
    positions, valid = select(candidates, batch["input_ids"], torch.arange(len(ids)), 7, starts)
    selected = torch.zeros_like(candidates)
    for b in range(len(ids)):
        selected[b, positions[b][valid[b]]] = True
    word = words_of(starts, candidates)
    multi = 0
    for b in range(len(ids)):
        for w in word[b][selected[b]].unique().tolist():
            members = candidates[b] & (word[b] == w)
            assert bool(selected[b][members].all()), (b, w)  # the whole word, never part of it
            multi += int(members.sum()) > 1
    assert multi > 20  # multi-character words were masked as units
    # without the stored starts (the ## rule: no Chinese character is a piece) it cuts words apart
    positions, valid = select(candidates, batch["input_ids"], torch.arange(len(ids)), 7, None)
    cut = 0
    for b in range(len(ids)):
        chosen = torch.zeros_like(candidates[b])
        chosen[positions[b][valid[b]]] = True
        for w in word[b][chosen].unique().tolist():
            cut += not bool(chosen[candidates[b] & (word[b] == w)].all())
    assert cut > 20


def test_windows_of_the_sequence_length_warm_up_keep_the_word_starts(tmp_path, tok_dir):
    data = build(tmp_path, tok_dir, segmented=True, segmenter="spaces")
    batch = next(iter(eval_batches(data, 8, 8)))  # no valid split: the first training examples
    assert "word_starts" in batch and batch["word_starts"].shape == batch["input_ids"].shape
    windows = cut_into_windows(batch, 8, data.special_ids["pad"])
    T = batch["input_ids"].shape[1]
    whole = torch.nn.functional.pad(batch["word_starts"], (0, -T % 8)).reshape(-1, 8)
    ids = torch.nn.functional.pad(batch["input_ids"], (0, -T % 8)).reshape(-1, 8)
    keep = (ids != data.special_ids["pad"]).any(1)
    assert torch.equal(windows["word_starts"], whole[keep]) and torch.equal(windows["input_ids"], ids[keep])


def test_pretraining_with_stored_word_starts_resumes_exactly(tmp_path, tok_dir):
    from synthetic import SMALL_RUN

    from electra.pretraining.pretrain import pretrain
    data = build(tmp_path, tok_dir, segmented=True, segmenter="spaces")
    overrides = SMALL_RUN + ["train.masking=whole_word", "train.short_seq_length=8", "train.short_seq_steps=2",
                               "train.warmup_steps=2"]
    full = pretrain(data.dir, tmp_path / "full", preset="tiny", max_steps=4, overrides=overrides, progress=False)
    records = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["word_segmenter"] == "spaces" and records[0]["word_boundaries"] is True
    run = tmp_path / "stopped"
    pretrain(data.dir, run, preset="tiny", max_steps=4, overrides=overrides + ["train.stop_at=2"], progress=False)
    pretrain(data.dir, run, resume=True, progress=False)
    losses = [{r["step"]: r["gen_loss"] for r in (json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines())
               if "gen_loss" in r} for d in (full, run)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5) and sorted(losses[0]) == [1, 2, 3, 4]


def test_without_jieba_the_build_stops_with_one_line(tmp_path, tok_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba now raises ImportError
    with pytest.raises(UserError, match=r"--word-segmenter jieba needs the jieba package: pip install jieba"):
        build(tmp_path, tok_dir, segmented=False, segmenter="jieba")
    assert not (tmp_path / "data-jieba").exists()
