"""CJK text through every reader and the terminal output: Chinese, Japanese and Korean,
full-width punctuation, mixed scripts and a byte-order mark."""

import gzip
import io
import json

import pytest

from electra.data.readers import read_classification, read_conll
from electra.data.sources import CorpusReader, iter_documents
from electra.pretraining.inspect_tokens import align_right, display_width

BOM = "\ufeff"
SENTENCES = ["今天天气很好，我们去公园吧！", "ELECTRA模型（小）：效果不错。", "日本語のテキスト、カタカナ。",
             "한국어 문장입니다.", "混合 scripts 和 数字１２３ and ＡＢＣ"]


@pytest.mark.parametrize("suffix", [".txt", ".txt.gz", ".jsonl"])
def test_the_corpus_reader_keeps_cjk_text_and_drops_a_bom(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    if suffix == ".jsonl":
        text = BOM + "\n".join(json.dumps({"text": s}, ensure_ascii=i % 2 == 0) for i, s in enumerate(SENTENCES))
    else:
        text = BOM + "\n".join(SENTENCES[:2]) + "\n\n" + "\n".join(SENTENCES[2:]) + "\n"
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    docs = list(iter_documents([path]))
    assert [line for doc in docs for line in doc] == SENTENCES
    assert len(docs) == (len(SENTENCES) if suffix == ".jsonl" else 2)
    reader = CorpusReader([path])
    list(reader)
    assert reader.location[0] == path  # where the last sentence came from


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_classification_readers_with_cjk_labels_and_text(tmp_path, fmt):
    rows = [(s, "正面" if i % 2 else "负面") for i, s in enumerate(SENTENCES)]
    path = tmp_path / f"t.{fmt}"
    if fmt == "tsv":
        body = "sentence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in rows)
    elif fmt == "csv":
        body = "sentence,label\n" + "".join(f"\"{s}\",{label}\n" for s, label in rows)
    else:
        body = "".join(json.dumps({"text": s, "label": label}, ensure_ascii=False) + "\n" for s, label in rows)
    path.write_text(BOM + body, encoding="utf-8")
    examples, info = read_classification(path)
    assert [(e.text, e.label) for e in examples] == rows
    assert info["labels"] == ["正面", "负面"]


def test_conll_reader_with_chinese_words_and_full_width_punctuation(tmp_path):
    sentences = [[("今天", "t"), ("天气", "n"), ("很", "d"), ("好", "a"), ("，", "w"), ("ＡＢＣ", "nx"), ("！", "w")],
                 [("日本語", "n"), ("の", "u"), ("テキスト", "n"), ("。", "w")]]
    path = tmp_path / "p.conll"
    path.write_text(BOM + "\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n",
                    encoding="utf-8")
    examples = read_conll(path)
    assert [list(zip(e.words, e.tags)) for e in examples] == sentences


def test_display_width_counts_terminal_columns():
    assert display_width("abc") == 3 and display_width("中文") == 4 and display_width("，！") == 4
    assert display_width("ＡＢ") == 4 and display_width("한국") == 4 and display_width("ｶﾀ") == 2  # half-width kana
    assert display_width("e\u0301") == 1  # a combining accent takes no column
    lines = [f"{align_right(t, 10)} 0.500" for t in ("the", "中文", "##ing", "，", "テキスト")]
    assert {display_width(line) for line in lines} == {16}  # the probabilities line up


def test_inspect_lines_up_chinese_tokens(tmp_path, monkeypatch):
    """inspect_text on a discriminator whose tokenizer has Chinese characters: every row is as wide."""
    import torch

    from electra.data.tokenizer import load_tokenizer
    from electra.pretraining import inspect_tokens

    vocab = tmp_path / "vocab.txt"
    chars = sorted(set("今天北京的天气非常好我们去公园散步吧，。"))
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, "the"]) + "\n", encoding="utf-8")

    class Uniform(torch.nn.Module):
        config = type("C", (), {"max_position_embeddings": 64})()

        def forward(self, ids):
            return torch.zeros(ids.shape)  # P(replaced) = 0.5 everywhere

    monkeypatch.setattr(inspect_tokens, "load_discriminator", lambda path: (Uniform(), tmp_path))
    monkeypatch.setattr(inspect_tokens, "load_tokenizer", lambda path: load_tokenizer(vocab))
    out = io.StringIO()
    scored = inspect_tokens.inspect_text(tmp_path, "今天北京的天气非常好， the 公园。", color=False, out=out)
    lines = out.getvalue().splitlines()
    assert [t for t, _ in scored] == list("今天北京的天气非常好，") + ["the"] + list("公园。")
    assert len(lines) == len(scored) and len({display_width(line) for line in lines}) == 1


def test_the_chinese_demo_runs_end_to_end_and_transformers_loads_its_export(tmp_path):
    """`electra demo --lang zh` on a given Chinese corpus (the fetched one is tested in test_demo_data.py):
    jieba word starts, whole-word masking, export, and `inspect` on a Chinese sentence."""
    pytest.importorskip("jieba")
    transformers = pytest.importorskip("transformers")
    import subprocess
    import sys

    import torch

    from electra.demo.run import DEMO_SENTENCE_ZH
    from electra.interop.hf import load_hf_model

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_word_segmenter import corpus_lines

    corpus = tmp_path / "zh.txt"
    corpus.write_text("\n".join(corpus_lines(False, repeat=30)) + "\n", encoding="utf-8")
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "electra", "demo", "--lang", "zh", "--corpus", str(corpus),
                           "--max-steps", "4", "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "whole-word masking" in proc.stdout and f"`electra inspect` on {DEMO_SENTENCE_ZH}" in proc.stdout
    assert "held-out slice" in proc.stdout and "[UNK]" in proc.stdout
    start = json.loads((out / "pretrain" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["word_segmenter"].startswith("jieba") and start["word_boundaries"] is True
    folder = out / "pretrain" / "hf" / "discriminator"
    tok = transformers.ElectraTokenizerFast.from_pretrained(folder)
    enc = tok(DEMO_SENTENCE_ZH, return_tensors="pt")
    assert tok.convert_ids_to_tokens(enc["input_ids"][0])[1:4] == ["今", "天", "北"]
    hf = transformers.ElectraForPreTraining.from_pretrained(folder).eval()
    ours = load_hf_model(folder, "discriminator").eval()
    with torch.no_grad():
        a = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        b = hf(**enc).logits
    assert (a - b).abs().max().item() <= 1e-4


def test_predict_writes_chinese_as_it_was_given_for_all_three_task_families(tmp_path):
    """`predict` keeps CJK text, words and answer spans exactly as in the input: raw UTF-8 in
    the JSONL (no \\u escapes), one tag per Chinese word, and a QA answer that is a character-exact slice of
    the Chinese context (BERT's normaliser spaces ideographs apart, so the offsets must map back through it)."""
    from toy_tasks import save_toy_model

    from electra.cli import main

    words = ["北京", "上海", "喜欢", "公园", "天气", "非常", "好", "我们", "。", "，", "electra"]
    (tmp_path / "m").mkdir()
    model = save_toy_model(tmp_path / "m", words, 64)
    fast = ["--set", "epochs=1", "--set", "batch_size=4", "--quiet"]

    sentiment = tmp_path / "s.tsv"
    sentiment.write_text("sentence\tlabel\n我们喜欢北京的公园。\t1\n天气非常不好，\t0\n上海的天气好\t1\n不喜欢\t0\n",
                         encoding="utf-8")
    conll = tmp_path / "p.conll"
    conll.write_text("我们\tr\n喜欢\tv\n北京\tns\n。\tw\n\n上海\tns\n天气\tn\n非常\td\n好\ta\n，\tw\n", encoding="utf-8")
    context = "我们喜欢北京的公园。上海天气非常好，ELECTRA 很好。"
    squad = tmp_path / "q.json"
    squad.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": [{"id": f"q{i}", "question": "哪里的公园？",
                                      "answers": [{"text": "北京", "answer_start": context.index("北京")}]}
                                     for i in range(4)]}]}]}, ensure_ascii=False), encoding="utf-8")

    for task, data in (("classification", sentiment), ("tagging", conll), ("qa", squad)):
        ft = tmp_path / f"ft_{task}"
        qa = ["--set", "max_query_length=16", "--set", "doc_stride=16"] if task == "qa" else []
        assert main(["finetune", "--model", str(model), "--task", task, "--train", str(data), "--dev", str(data),
                     "--out", str(ft), *fast, *qa]) == 0
        out = tmp_path / f"{task}.jsonl"
        assert main(["predict", "--model", str(ft), "--input", str(data), "--out", str(out), "--quiet"]) == 0
        raw = out.read_text(encoding="utf-8")
        assert "\\u" not in raw, f"{task}: CJK escaped in the predictions"
        rows = [json.loads(line) for line in raw.splitlines()]
        if task == "classification":
            assert [r["text"] for r in rows] == ["我们喜欢北京的公园。", "天气非常不好，", "上海的天气好", "不喜欢"]
        elif task == "tagging":
            assert [r["words"] for r in rows] == [["我们", "喜欢", "北京", "。"], ["上海", "天气", "非常", "好", "，"]]
            assert [len(r["tags"]) for r in rows] == [4, 5]
        else:
            assert len(rows) == 4 and all(r["question"] == "哪里的公园？" for r in rows)
            assert all(r["answer"] and r["answer"] in context for r in rows)
