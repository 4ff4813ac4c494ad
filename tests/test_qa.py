"""Extractive QA: windows, answer labels and answer decoding (electra.finetuning.qa).

Every test runs with two WordPiece tokenizers: the real bert-base-uncased vocabulary (skipped when
absent) and a tiny one trained here, whose small vocabulary splits words into many pieces, so that
answers cut word pieces and contexts need several windows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from electra.data.examples import QAAnswer, QAExample
from electra.data.tokenizer import load_tokenizer, special_token_ids, train_tokenizer
from electra.errors import UserError
from electra.finetuning.qa import QAFeatures, featurize_qa, locate_answer, postprocess_qa

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BERT_VOCAB = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
SQUAD_SAMPLE = SHARED / "tasks" / "squad_sample" / "dev-v1.1-sample.json"

CORPUS = """Paris is the capital and most populous city of France.
The river Seine flows through the city from east to west.
Many visitors come to see the museums, the churches and the old bridges.
The unaffordable housing crisis worried the city council for many years.
In 1858 a young girl reported visions near the grotto at Lourdes.
Students at the university study science, history, music and languages.
"""


@pytest.fixture(scope="module", params=["bert", "trained"])
def tok(request, tmp_path_factory):
    if request.param == "bert":
        if not BERT_VOCAB.is_file():
            pytest.skip(f"{BERT_VOCAB} not present")
        return load_tokenizer(BERT_VOCAB)
    folder = tmp_path_factory.mktemp("qa_tok")
    (folder / "corpus.txt").write_text(CORPUS * 3, encoding="utf-8")
    return train_tokenizer([folder / "corpus.txt"], 200, folder / "tok", progress=False)


def example(context: str, text: str, question: str = "Where is it?", start: int | None = None,
            qid: str = "q", impossible: bool = False) -> QAExample:
    answers = [] if impossible else [QAAnswer(text, context.index(text) if start is None else start)]
    return QAExample(qid=qid, question=question, context=context, answers=answers, is_impossible=impossible)


def window_context(feats: QAFeatures, f: int) -> list[int]:
    """Positions of the context tokens in window f."""
    return [i for i, o in enumerate(feats.offsets[f]) if o is not None]


def check_label(ex: QAExample, feats: QAFeatures, f: int) -> None:
    """The labelled tokens of window f decode (by offsets) to the answer, or to the smallest
    token-aligned span around it when an answer boundary falls inside a word piece."""
    s, e = feats.start_positions[f], feats.end_positions[f]
    offsets = feats.offsets[f]
    assert 0 < s <= e and offsets[s] is not None and offsets[e] is not None
    text = ex.answers[0].text
    a = ex.answers[0].start + (len(text) - len(text.lstrip()))   # the answer's non-whitespace characters
    b = a + len(text.strip())
    assert offsets[s][0] <= a < offsets[s][1] and offsets[e][0] < b <= offsets[e][1]
    decoded = ex.context[offsets[s][0]:offsets[e][1]]
    assert text.strip() in decoded
    aligned = any(o and o[0] == a for o in offsets) and any(o and o[1] == b for o in offsets)
    if aligned:
        assert decoded == text.strip()


# --------------------------------------------------------------------------- (a) labels decode to the answer

HARD_CONTEXTS = [
    ("Paris is the capital and most populous city of France.", ["Paris", "France", "France.", "Paris ", "capital"]),
    ("  The   Zürich  café\thosted naïve über-fans in 1858 —  日本語 text.  ",
     ["Zürich  café", "naïve", "1858", "日本", "über-fans", "text."]),
    ("The unaffordable housing crisis worried the council.", ["afford", "unaffordable housing", "ouncil"]),
    ("I love 🙂 emojis and ÉCOLES", ["🙂", "ÉCOLES", "I"]),
]


@pytest.mark.parametrize("max_seq_length,doc_stride", [(384, 128), (20, 3)])
def test_training_labels_decode_to_answer(tok, max_seq_length, doc_stride):
    examples = [example(c, t, question="what?", qid=f"{i}-{j}")
                for i, (c, texts) in enumerate(HARD_CONTEXTS) for j, t in enumerate(texts)]
    feats, counts = featurize_qa(examples, tok, max_seq_length=max_seq_length, doc_stride=doc_stride,
                                 max_query_length=8, training=True)
    assert counts["answer_not_in_context"] == 0 and counts["examples"] == len(examples)
    labelled = set()
    for f in range(len(feats)):
        assert len(feats.input_ids[f]) <= max_seq_length
        if feats.start_positions[f] != 0:
            check_label(examples[feats.example_index[f]], feats, f)
            labelled.add(feats.example_index[f])
    assert labelled == set(range(len(examples)))   # every answer fits in some window


def test_single_window_is_the_tokenizers_pair_encoding(tok):
    for context, _ in HARD_CONTEXTS:
        feats, _ = featurize_qa([QAExample("p", "Who hosted  naïve fans?", context)], tok, training=False)
        pair = tok.encode("Who hosted  naïve fans?", context)
        assert len(feats) == 1
        assert feats.input_ids[0] == pair.ids and feats.token_type_ids[0] == pair.type_ids
        assert [o is not None for o in feats.offsets[0]] == [t == 1 and i < len(pair.ids) - 1
                                                            for i, t in enumerate(pair.type_ids)]


def test_answer_at_very_start_and_end(tok):
    context = "Lourdes is a town in France"
    for text in ("Lourdes", "France", context):
        feats, _ = featurize_qa([example(context, text)], tok, training=True)
        assert len(feats) == 1
        s, e = feats.start_positions[0], feats.end_positions[0]
        assert context[feats.offsets[0][s][0]:feats.offsets[0][e][1]] == text
        if text.startswith("Lourdes"):
            assert feats.offsets[0][s - 1] is None   # the first context token, right after [SEP]
        if text.endswith("France"):
            assert feats.offsets[0][e + 1] is None and e + 1 == len(feats.input_ids[0]) - 1   # before the last [SEP]


# --------------------------------------------------------------------------- (b) windows and stride

LONG = " ".join(f"In {1800 + i} the city of Paris built bridge number {i} over the river Seine." for i in range(40))


@pytest.mark.parametrize("max_seq_length,doc_stride", [(64, 16), (48, 7), (40, 1000)])
def test_windows_overlap_with_stride_and_cover_context(tok, max_seq_length, doc_stride):
    question = "Which bridge did the city of Paris build over the river Seine in the year 1858 and why?"
    ex = QAExample("long", question, LONG, [QAAnswer("1830", LONG.index("1830"))])
    feats, counts = featurize_qa([ex], tok, max_seq_length=max_seq_length, doc_stride=doc_stride,
                                 max_query_length=10, training=False)
    full = tok.encode(LONG, add_special_tokens=False)
    q_len = len(tok.encode(question, add_special_tokens=False).ids)
    assert q_len > 10 and counts["questions_truncated"] == 1
    ids = special_token_ids(tok)
    window = max_seq_length - 10 - 3
    step = min(doc_stride, window)
    covered = set()
    assert len(feats) == counts["windows"] > 2
    for f in range(len(feats)):
        n = len(feats.input_ids[f])
        assert n <= max_seq_length and feats.example_index[f] == 0
        assert feats.input_ids[f][0] == ids["cls"] and feats.input_ids[f][11] == ids["sep"]
        assert feats.input_ids[f][-1] == ids["sep"]
        assert feats.token_type_ids[f] == [0] * 12 + [1] * (n - 12)
        positions = window_context(feats, f)
        assert positions == list(range(12, n - 1))
        first = full.offsets.index(feats.offsets[f][12])     # where this window starts in the whole context
        assert first == f * step
        assert feats.input_ids[f][12:-1] == full.ids[first:first + len(positions)]
        assert [feats.offsets[f][p] for p in positions] == full.offsets[first:first + len(positions)]
        if f < len(feats) - 1:
            assert len(positions) == window
        else:
            assert first + len(positions) == len(full.ids)
        covered.update(range(first, first + len(positions)))
    assert covered == set(range(len(full.ids)))


def test_empty_context_still_gets_a_window(tok):
    feats, counts = featurize_qa([QAExample("e", "why?", "")], tok, training=False)
    assert counts["windows"] == 1 and window_context(feats, 0) == []


def test_bad_lengths_are_user_errors(tok):
    with pytest.raises(UserError, match="max_seq_length"):
        featurize_qa([], tok, max_seq_length=60, max_query_length=64, training=True)
    with pytest.raises(UserError, match="doc_stride"):
        featurize_qa([], tok, doc_stride=0, training=True)


def test_tokenizer_settings_are_ignored_and_untouched(tok):
    tok.enable_truncation(8)
    tok.enable_padding(length=16)
    try:
        feats, _ = featurize_qa([example(LONG, "1830")], tok, max_seq_length=128, doc_stride=64, training=True)
        assert max(len(x) for x in feats.input_ids) == 128   # windows, not the tokenizer's truncation
        assert tok.truncation["max_length"] == 8 and tok.padding["length"] == 16
    finally:
        tok.no_truncation()
        tok.no_padding()


# --------------------------------------------------------------------------- (c) answers outside a window

def test_windows_without_the_answer_label_cls(tok):
    examples = [example(LONG, "bridge number 1 over", qid="early"), example(LONG, "number 38", qid="late"),
                example(LONG, "", qid="none", impossible=True)]
    feats, counts = featurize_qa(examples, tok, max_seq_length=48, doc_stride=12, max_query_length=16,
                                 training=True)
    full = tok.encode(LONG, add_special_tokens=False)
    for index, ex in enumerate(examples[:2]):
        a = ex.answers[0].start
        b = a + len(ex.answers[0].text)
        answer_tokens = {o for o in full.offsets if o[0] < b and o[1] > a}
        windows = [f for f in range(len(feats)) if feats.example_index[f] == index]
        assert len(windows) > 2
        with_answer = [f for f in windows if answer_tokens <= set(feats.offsets[f])]
        assert with_answer and len(with_answer) < len(windows)
        for f in windows:
            if f in with_answer:
                check_label(ex, feats, f)
            else:
                assert feats.start_positions[f] == feats.end_positions[f] == 0
    impossible = [f for f in range(len(feats)) if feats.example_index[f] == 2]
    assert impossible and all(feats.start_positions[f] == feats.end_positions[f] == 0 for f in impossible)
    assert counts["impossible"] == 1
    assert counts["windows_without_answer"] == sum(1 for s in feats.start_positions if s == 0)


# --------------------------------------------------------------------------- (d) answers not in the context

def test_missing_answers_are_skipped_and_counted(tok):
    context = "Paris is the capital of France. Paris has many bridges."
    examples = [
        example(context, "Berlin", start=0, qid="absent"),
        example(context, "capital", qid="ok"),
        example(context, "Paris has", start=31, qid="shifted"),     # really at 32
        example(context, "Paris", start=30, qid="nearest"),         # twice; the one at 32 is nearer
        example(context, "", start=3, qid="empty"),
        example(context, "   ", start=5, qid="blank"),              # not there at all
        example(context, " ", start=5, qid="space"),                # there, but covers no token
        QAExample("unlabelled", "why?", context),                   # no answer, not marked impossible
    ]
    feats, counts = featurize_qa(examples, tok, training=True)
    assert counts["answer_not_in_context"] == 5 and counts["answer_relocated"] == 2
    kept = {examples[i].qid for i in feats.example_index}
    assert kept == {"ok", "shifted", "nearest"}
    for f in range(len(feats)):
        ex = examples[feats.example_index[f]]
        s, e = feats.start_positions[f], feats.end_positions[f]
        got = context[feats.offsets[f][s][0]:feats.offsets[f][e][1]]
        assert (got, feats.offsets[f][s][0]) == {"ok": ("capital", 13), "shifted": ("Paris has", 32),
                                                 "nearest": ("Paris", 32)}[ex.qid]
    # Evaluation keeps every example (it must be scored), labelled [CLS] when the answer is missing.
    feats, counts = featurize_qa(examples, tok, training=False)
    assert sorted(set(feats.example_index)) == list(range(len(examples)))
    assert counts["answer_not_in_context"] == 4   # the unlabelled one is fine for prediction
    assert feats.start_positions[examples_index(feats, 0)] == 0


def examples_index(feats: QAFeatures, index: int) -> int:
    return feats.example_index.index(index)


def test_locate_answer_rule():
    assert locate_answer("a b a", "a", 4) == (4, False)
    assert locate_answer("a b a", "a", 3) == (4, True)
    assert locate_answer("a b a", "a", 2) == (0, True)       # a tie goes to the earlier occurrence
    assert locate_answer("a b a", "c", 0) is None
    assert locate_answer("a b a", "", 0) is None


# --------------------------------------------------------------------------- (e) decoding answers

def two_window_setup(tok):
    ex = example(LONG, "number 12 over", qid="x")
    feats, _ = featurize_qa([ex], tok, max_seq_length=48, doc_stride=12, max_query_length=16, training=False)
    labelled = [f for f in range(len(feats)) if feats.start_positions[f] > 0]
    assert len(labelled) >= 2 and len(feats) > 3
    width = max(len(x) for x in feats.input_ids) + 5
    # Padding past each feature's length holds huge values, which must be ignored.
    start = np.full((len(feats), width), 100.0)
    end = np.full((len(feats), width), 100.0)
    for f in range(len(feats)):
        n = len(feats.input_ids[f])
        start[f, :n] = end[f, :n] = -1.0
        start[f, 1:window_context(feats, f)[0]] = 50.0   # question tokens are never answers
        end[f, 1:window_context(feats, f)[0]] = 50.0
    return ex, feats, labelled, start, end


def test_postprocess_picks_best_span_across_windows(tok):
    ex, feats, labelled, start, end = two_window_setup(tok)
    g1, g2 = labelled[0], labelled[-1]
    start[g1, feats.start_positions[g1]] = end[g1, feats.end_positions[g1]] = 3.0
    start[g2, feats.start_positions[g2]] = end[g2, feats.end_positions[g2]] = 5.0
    other = next(f for f in range(len(feats)) if f not in labelled)
    ctx = window_context(feats, other)
    start[other, ctx[2]], end[other, ctx[3]] = 4.0, 4.0          # second best, elsewhere
    preds, nbest, diff = postprocess_qa([ex], feats, start, end.tolist())   # arrays or lists
    assert preds == {"x": "number 12 over"}
    entries = nbest["x"]
    assert entries[0]["score"] == 10.0 and entries[0]["text"] == "number 12 over"
    assert entries[0]["start_char"] == LONG.index("number 12 over")
    assert entries[1]["score"] == 8.0
    assert len({(e["start_char"], e["end_char"]) for e in entries}) == len(entries) <= 20   # no duplicates
    assert [e["score"] for e in entries] == sorted((e["score"] for e in entries), reverse=True)
    assert math.isclose(sum(e["probability"] for e in entries), 1.0)
    assert all(LONG[e["start_char"]:e["end_char"]] == e["text"] for e in entries)
    assert diff["x"] == -2.0 - 10.0


def test_postprocess_respects_max_length_and_order(tok):
    ex, feats, labelled, start, end = two_window_setup(tok)
    f = labelled[0]
    ctx = window_context(feats, f)
    assert len(ctx) > 30
    start[f, ctx] = end[f, ctx] = -20.0
    start[f, ctx[0]], end[f, ctx[9]] = 9.0, 9.0      # 10 tokens long
    start[f, ctx[30]], end[f, ctx[25]] = 8.0, 8.0    # end before start
    start[f, ctx[12]], end[f, ctx[13]] = 2.0, 2.0    # the best valid span
    preds, nbest, _ = postprocess_qa([ex], feats, start, end, max_answer_length=5, n_best_size=5)
    o = feats.offsets[f]
    assert preds["x"] == LONG[o[ctx[12]][0]:o[ctx[13]][1]]
    assert len(nbest["x"]) == 5
    for e in nbest["x"]:
        n_tokens = len(tok.encode(e["text"], add_special_tokens=False).ids)
        assert e["start_char"] < e["end_char"] and n_tokens <= 5
    preds, _, _ = postprocess_qa([ex], feats, start, end, max_answer_length=10)
    assert preds["x"] == LONG[o[ctx[0]][0]:o[ctx[9]][1]]


def test_postprocess_version_2_null_answer(tok):
    ex, feats, labelled, start, end = two_window_setup(tok)
    f = labelled[0]
    start[f, feats.start_positions[f]] = end[f, feats.end_positions[f]] = 3.0   # best span: 6
    start[:, 0] = end[:, 0] = 4.0                                             # null 8 in most windows
    start[1, 0] = end[1, 0] = 3.5                                             # the minimum: 7
    preds, nbest, diff = postprocess_qa([ex], feats, start, end, version_2=True)
    assert diff["x"] == 7.0 - 6.0 and preds["x"] == ""
    assert nbest["x"][0]["text"] == "" and nbest["x"][0]["score"] == 7.0
    preds, _, _ = postprocess_qa([ex], feats, start, end, version_2=True, null_score_diff_threshold=1.5)
    assert preds["x"] == "number 12 over"
    preds, nbest, _ = postprocess_qa([ex], feats, start, end)                # v1 ignores the null score
    assert preds["x"] == "number 12 over" and all(e["text"] for e in nbest["x"])


def test_postprocess_without_candidates_and_bad_rows(tok):
    feats, _ = featurize_qa([QAExample("e", "why?", "")], tok, training=False)
    preds, nbest, diff = postprocess_qa([QAExample("e", "why?", "")], feats, [[0.0] * 9], [[0.0] * 9])
    assert preds == {"e": ""} and nbest == {"e": []} and diff["e"] == math.inf
    with pytest.raises(ValueError, match="one row per feature"):
        postprocess_qa([QAExample("e", "why?", "")], feats, [], [])


# --------------------------------------------------------------------------- (f) round trip on SQuAD

def squad_examples(path: Path) -> list[QAExample]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [QAExample(qid=qa["id"], question=qa["question"], context=p["context"], title=article["title"],
                      answers=[QAAnswer(a["text"], a["answer_start"]) for a in qa["answers"]],
                      is_impossible=qa.get("is_impossible", False))
            for article in data for p in article["paragraphs"] for qa in p["qas"]]


@pytest.mark.parametrize("max_seq_length,doc_stride,max_query_length", [(384, 128, 64), (96, 16, 32)])
def test_squad_sample_round_trip(tok, max_seq_length, doc_stride, max_query_length):
    if not SQUAD_SAMPLE.is_file():
        pytest.skip(f"{SQUAD_SAMPLE} not present")
    examples = squad_examples(SQUAD_SAMPLE)
    feats, counts = featurize_qa(examples, tok, max_seq_length=max_seq_length, doc_stride=doc_stride,
                                 max_query_length=max_query_length, training=False)
    assert counts["answer_not_in_context"] == 0 and counts["answer_relocated"] == 0
    width = max(len(x) for x in feats.input_ids)
    start, end = np.zeros((len(feats), width)), np.zeros((len(feats), width))
    for f in range(len(feats)):
        if feats.start_positions[f]:
            start[f, feats.start_positions[f]] += 10.0
            end[f, feats.end_positions[f]] += 10.0
    preds, _, _ = postprocess_qa(examples, feats, start, end)
    assert preds == {ex.qid: ex.answers[0].text for ex in examples}
