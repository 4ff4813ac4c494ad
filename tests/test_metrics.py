"""Evaluation metrics (electra/finetuning/metrics.py): hand-worked examples, edge cases, property tests, and the
SQuAD scorer against a transcription of the official scripts (tests/squad_official.py)."""

import json
import math

import numpy as np
import pytest
import squad_official as official
from hypothesis import given, settings
from hypothesis import strategies as st

from electra.data.examples import QAAnswer, QAExample
from electra.errors import UserError
from electra.finetuning.metrics import (_average_ranks, _chunks, accuracy, classification_metrics, exact_match,
                                        f1_binary, f1_macro, f1_score, matthews_corrcoef, normalize_answer, pearson,
                                        span_f1, spearman, squad_evaluate, token_accuracy)

# --------------------------------------------------------------------------- classification

PREDS = [1, 0, 1, 1, 0]
LABELS = [1, 1, 1, 0, 0]
# class 1: TP = idx 0, 2 -> 2; FP = idx 3 -> 1; FN = idx 1 -> 1
# class 0: TP = idx 4 -> 1; FP = idx 1 -> 1; FN = idx 3 -> 1


def test_accuracy_by_hand():
    assert accuracy(PREDS, LABELS) == 3 / 5                       # idx 0, 2, 4 right
    assert accuracy(np.array(PREDS), np.array(LABELS)) == 3 / 5
    assert accuracy(["a", "b"], ["a", "a"]) == 0.5


def test_f1_binary_and_macro_by_hand():
    # class 1: P = 2/3, R = 2/3 -> F1 = 2/3  (= 2*TP / (2*TP + FP + FN) = 4/6)
    assert f1_binary(PREDS, LABELS) == pytest.approx(2 / 3)
    # class 0: P = 1/2, R = 1/2 -> F1 = 1/2 (= 2/4)
    assert f1_binary(PREDS, LABELS, positive=0) == pytest.approx(1 / 2)
    # macro: (2/3 + 1/2) / 2 = 7/12
    assert f1_macro(PREDS, LABELS) == pytest.approx(7 / 12)


def test_f1_macro_counts_classes_only_predicted():
    # labels {a}, preds {a, b}: F1(a): TP 1, FN 1 -> 2/3; F1(b): TP 0, FP 1 -> 0; mean over {a, b} = 1/3
    assert f1_macro(["a", "b"], ["a", "a"]) == pytest.approx(1 / 3)


def test_mcc_binary_by_hand():
    labels = [1, 1, 1, 1, 1, 0, 0, 0]
    preds = [1, 1, 1, 0, 0, 0, 0, 1]
    # 2x2 table: TP = 3, FN = 2, TN = 2, FP = 1
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (6 - 2) / sqrt(4*5*3*4) = 4 / sqrt(240)
    assert matthews_corrcoef(preds, labels) == pytest.approx(4 / math.sqrt(240))
    # perfect and perfectly inverted
    assert matthews_corrcoef(labels, labels) == pytest.approx(1.0)
    assert matthews_corrcoef([1 - y for y in labels], labels) == pytest.approx(-1.0)


def test_mcc_multiclass_by_hand():
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 2, 0]
    # t (true counts) = (2, 2, 2); p (predicted counts) = (2, 3, 1); correct c = 4 (idx 0, 2, 3, 4); s = 6
    # cov_tp = c*s - t.p = 24 - (4 + 6 + 2) = 12
    # cov_pp = s^2 - p.p = 36 - (4 + 9 + 1) = 22;  cov_tt = 36 - (4 + 4 + 4) = 24
    # MCC = 12 / sqrt(24 * 22)
    assert matthews_corrcoef(preds, labels) == pytest.approx(12 / math.sqrt(528))


def test_classification_edge_cases():
    # all one class, predicted right: no positives anywhere -> binary F1 0 (zero_division=0), MCC undefined -> 0
    assert accuracy([0, 0, 0], [0, 0, 0]) == 1.0
    assert f1_binary([0, 0, 0], [0, 0, 0]) == 0.0
    assert f1_macro([0, 0, 0], [0, 0, 0]) == 1.0                  # the one class present is perfect
    assert matthews_corrcoef([0, 0, 0], [0, 0, 0]) == 0.0
    # constant wrong prediction: F1(1) = 0 (TP 0, FP 3), MCC undefined (one predicted class) -> 0
    assert f1_binary([1, 1, 1], [0, 0, 0]) == 0.0
    assert f1_macro([1, 1, 1], [0, 0, 0]) == 0.0
    assert matthews_corrcoef([1, 1, 1], [0, 1, 0]) == 0.0
    # empty
    assert accuracy([], []) == f1_binary([], []) == f1_macro([], []) == matthews_corrcoef([], []) == 0.0
    with pytest.raises(ValueError, match="3 vs 2"):
        accuracy([1, 2, 3], [1, 2])


def _brute_force(preds, labels):
    """Confusion matrix with numpy; F1 per class from its cells; MCC as the correlation of the
    one-hot indicator matrices (Gorodkin): cov(X, Y) / sqrt(cov(X, X) cov(Y, Y))."""
    classes = sorted(set(labels) | set(preds))
    idx = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for p, y in zip(preds, labels):
        cm[idx[y], idx[p]] += 1
    f1 = {}
    for c, i in idx.items():
        tp, fp, fn = cm[i, i], cm[:, i].sum() - cm[i, i], cm[i, :].sum() - cm[i, i]
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1[c] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    x = np.eye(len(classes))[[idx[y] for y in labels]]
    y = np.eye(len(classes))[[idx[p] for p in preds]]
    x, y = x - x.mean(0), y - y.mean(0)
    cxy, cxx, cyy = (x * y).sum(), (x * x).sum(), (y * y).sum()
    mcc = cxy / math.sqrt(cxx * cyy) if cxx * cyy > 1e-12 else 0.0
    return f1, mcc


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40))
def test_f1_and_mcc_match_brute_force_confusion_matrix(pairs):
    preds, labels = [p for p, _ in pairs], [y for _, y in pairs]
    f1, mcc = _brute_force(preds, labels)
    for c in range(4):
        assert f1_binary(preds, labels, positive=c) == pytest.approx(f1.get(c, 0.0))
    assert f1_macro(preds, labels) == pytest.approx(sum(f1.values()) / len(f1))
    assert matthews_corrcoef(preds, labels) == pytest.approx(mcc, abs=1e-9)


# --------------------------------------------------------------------------- regression

def test_pearson_by_hand():
    # x - mean = (-1, 0, 1); y = (2, 4, 7), mean 13/3 -> (-7/3, -1/3, 8/3)
    # sxy = 7/3 + 0 + 8/3 = 5; sxx = 2; syy = (49 + 1 + 64)/9 = 114/9;  r = 5 / sqrt(2 * 114/9)
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(228 / 9))
    assert pearson([1, 2, 3], [6, 4, 2]) == pytest.approx(-1.0)


def test_average_ranks_share_ties():
    # sorted: 10 | 20 20 20 | 30 -> positions 1 | 2 3 4 | 5 -> ranks 1, (2+3+4)/3 = 3, 5
    assert _average_ranks([10, 20, 20, 30, 20]).tolist() == [1.0, 3.0, 3.0, 5.0, 3.0]


def test_spearman_by_hand_with_ties():
    # ranks x = (1, 2.5, 2.5, 4), y = (1, 3, 2, 4); both mean 2.5
    # dx = (-1.5, 0, 0, 1.5), dy = (-1.5, .5, -.5, 1.5): sxy = 4.5, sxx = 4.5, syy = 5
    # rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    # monotone but not linear: spearman 1, pearson below 1
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [1, 8, 27, 64]) < 0.99


def test_correlations_undefined_are_zero():
    assert pearson([0.1, 0.1, 0.1], [1, 2, 3]) == 0.0            # constant side (x - mean may not be 0 in floats)
    assert spearman([1, 2, 3], [5, 5, 5]) == 0.0
    assert pearson([], []) == spearman([], []) == 0.0
    assert pearson([1.0], [2.0]) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-20, 20), st.integers(-20, 20)), min_size=2, max_size=30))
def test_spearman_invariant_under_monotone_transforms(pairs):
    x, y = [a for a, _ in pairs], [b for _, b in pairs]
    rho = spearman(x, y)
    # strictly increasing maps keep the ranks (and the ties); a decreasing one flips the sign
    assert spearman([a ** 3 + 7 for a in x], [math.exp(b / 5) for b in y]) == pytest.approx(rho, abs=1e-12)
    assert spearman([-a for a in x], y) == pytest.approx(-rho, abs=1e-12)


def test_spearman_matches_scipy_when_available():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 50), rng.normal(size=50).round(1)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])


def test_classification_metrics_bundles():
    two = classification_metrics(PREDS, LABELS, num_labels=2, is_regression=False)
    assert two == pytest.approx({"accuracy": 3 / 5, "f1": 2 / 3, "f1_macro": 7 / 12,
                                 "mcc": matthews_corrcoef(PREDS, LABELS)})
    three = classification_metrics([0, 1, 2], [0, 1, 1], num_labels=3, is_regression=False)
    assert set(three) == {"accuracy", "f1_macro", "mcc"}         # no binary F1 for 3 classes
    reg = classification_metrics([1.0, 2.0, 3.0], [0.0, 4.0, 3.0], num_labels=1, is_regression=True)
    # errors 1, -2, 0 -> mse = (1 + 4 + 0) / 3
    assert reg["mse"] == pytest.approx(5 / 3)
    assert set(reg) == {"pearson", "spearman", "mse"}


# --------------------------------------------------------------------------- tagging

def test_token_accuracy():
    # 3 words, 2 right
    assert token_accuracy([["B-PER", "O"], ["O"]], [["B-PER", "I-PER"], ["O"]]) == pytest.approx(2 / 3)
    assert token_accuracy([], []) == 0.0
    with pytest.raises(ValueError, match="sentence 0"):
        token_accuracy([["O"]], [["O", "O"]])


def test_same_entities_in_three_schemes_decode_alike():
    # entities: PER = words 0-1, PER = word 2 (adjacent, same type), LOC = word 4
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]          # B- only to split adjacent same-type chunks
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]          # every chunk opens with B-
    bioes = ["B-PER", "E-PER", "S-PER", "O", "S-LOC"]
    want = [("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4)]
    for tags in (iob1, iob2, bioes):
        assert _chunks(tags, "BIES") == want
    assert span_f1([iob1], [iob1])["scheme"] == "iob1"
    assert span_f1([iob2], [iob2])["scheme"] == "iob2"
    assert span_f1([bioes], [bioes])["scheme"] == "bioes"
    assert span_f1([iob1], [iob2])["f1"] == 1.0                  # same spans, different encodings


def test_chunking_differs_where_the_schemes_differ():
    # IOB: I- continues, so B I I is one chunk; BIOES: E- closes the chunk and the I- after it opens a new one
    assert _chunks(["B-PER", "I-PER", "I-PER"], "BI") == [("PER", 0, 2)]
    assert _chunks(["B-PER", "E-PER", "I-PER"], "BIES") == [("PER", 0, 1), ("PER", 2, 2)]
    # IOB I- I- is one chunk; BIOES S- S- is two one-word chunks
    assert _chunks(["I-PER", "I-PER"], "BI") == [("PER", 0, 1)]
    assert _chunks(["S-PER", "S-PER"], "BIES") == [("PER", 0, 0), ("PER", 1, 1)]
    # E- then B- of the same type: two chunks (seqeval; plain conlleval.pl would merge these)
    assert _chunks(["B-PER", "E-PER", "B-PER", "E-PER"], "BIES") == [("PER", 0, 1), ("PER", 2, 3)]
    # IOB1's B- splits a run of same-type words: I I B I = (0-1), (2-3)
    assert _chunks(["I-PER", "I-PER", "B-PER", "I-PER"], "BI") == [("PER", 0, 1), ("PER", 2, 3)]
    # scored: gold BIOES two chunks vs a prediction that reads them as one
    r = span_f1([["B-PER", "I-PER", "I-PER"]], [["B-PER", "E-PER", "I-PER"]])
    assert (r["gold"], r["pred"], r["correct"]) == (2, 1, 0)


def test_i_after_o_or_other_type_starts_a_chunk():
    assert _chunks(["O", "I-PER", "I-PER"], "BI") == [("PER", 1, 2)]
    assert _chunks(["B-PER", "I-LOC", "I-LOC"], "BI") == [("PER", 0, 0), ("LOC", 1, 2)]
    assert _chunks(["I-PER", "E-LOC"], "BIES") == [("PER", 0, 0), ("LOC", 1, 1)]
    # I- after O opens the same span gold has -> exact match
    assert span_f1([["O", "I-PER", "I-PER"]], [["O", "B-PER", "I-PER"]])["f1"] == 1.0
    # an O inside breaks the chunk in two: PER(0), PER(2) vs gold PER(1-2) -> nothing right
    r = span_f1([["B-PER", "O", "I-PER"]], [["O", "B-PER", "I-PER"]])
    assert (r["gold"], r["pred"], r["correct"], r["f1"]) == (1, 2, 0, 0.0)
    # chunks never cross a sentence boundary
    assert span_f1([["B-PER"], ["I-PER"]], [["B-PER"], ["B-PER"]])["f1"] == 1.0


def test_span_f1_worked_example_with_type_mismatch():
    gold = [["B-PER", "I-PER", "O", "B-LOC"],     # PER(0-1), LOC(3)
            ["B-ORG", "O", "O"]]                  # ORG(0)
    pred = [["B-PER", "I-PER", "O", "B-ORG"],     # PER(0-1) right, ORG(3) wrong type
            ["B-ORG", "O", "B-MISC"]]             # ORG(0) right, MISC(2) spurious
    r = span_f1(pred, gold)
    # gold 3, pred 4, correct 2: P = 2/4, R = 2/3, F1 = 2*2 / (4 + 3) = 4/7
    assert (r["gold"], r["pred"], r["correct"]) == (3, 4, 2)
    assert r["precision"] == 0.5 and r["recall"] == pytest.approx(2 / 3) and r["f1"] == pytest.approx(4 / 7)
    t = r["per_type"]
    assert list(t) == ["LOC", "MISC", "ORG", "PER"]
    assert (t["PER"]["precision"], t["PER"]["recall"], t["PER"]["f1"]) == (1.0, 1.0, 1.0)
    assert (t["LOC"]["gold"], t["LOC"]["pred"], t["LOC"]["correct"], t["LOC"]["f1"]) == (1, 0, 0, 0.0)
    # ORG: gold 1, pred 2, correct 1 -> P 1/2, R 1, F1 2/3
    assert t["ORG"]["precision"] == 0.5 and t["ORG"]["recall"] == 1.0 and t["ORG"]["f1"] == pytest.approx(2 / 3)
    assert (t["MISC"]["gold"], t["MISC"]["pred"], t["MISC"]["precision"]) == (0, 1, 0.0)


def test_span_f1_type_mismatch_on_same_span():
    r = span_f1([["B-ORG", "I-ORG"]], [["B-PER", "I-PER"]])
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)
    assert r["per_type"]["PER"]["gold"] == 1 and r["per_type"]["ORG"]["pred"] == 1


def test_span_f1_edge_cases_and_errors():
    empty = span_f1([["O", "O"]], [["O", "O"]])
    assert (empty["precision"], empty["recall"], empty["f1"], empty["per_type"]) == (0.0, 0.0, 0.0, {})
    assert span_f1([], [])["f1"] == 0.0
    assert _chunks(["B-ORG-X", "I-ORG-X"], "BI") == [("ORG-X", 0, 1)]   # type = all after the first '-'
    with pytest.raises(UserError, match="S-PER"):
        span_f1([["S-PER"]], [["O"]], scheme="iob2")                     # explicit IOB refuses E-/S-
    assert span_f1([["S-PER"]], [["S-PER"]], scheme="BIOES")["f1"] == 1.0
    with pytest.raises(UserError, match="auto, iob1, iob2, bio, bioes, iobes"):
        span_f1([["O"]], [["O"]], scheme="bilou")
    with pytest.raises(UserError, match="'PER'"):
        span_f1([["PER"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 0"):
        span_f1([["O"]], [["O", "O"]])


# --------------------------------------------------------------------------- SQuAD: the pieces

def test_normalize_answer():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"              # articles only as whole words
    assert normalize_answer("U.S.A.") == "usa"
    assert normalize_answer("  ") == normalize_answer("the") == ""


def test_exact_and_f1_by_hand():
    assert exact_match("the Eiffel Tower.", "Eiffel tower") == 1
    assert exact_match("Eiffel", "Eiffel tower") == 0
    # pred [big, red, dog] vs gold [red, dog, barked]: 2 common -> P = R = 2/3 -> F1 = 2/3
    assert f1_score("the big red dog", "a red dog barked") == pytest.approx(2 / 3)
    # repeated tokens count once per gold occurrence: common 1 -> P = 1/3, R = 1 -> F1 = 2*(1/3)/(4/3) = 1/2
    assert f1_score("dog dog dog", "dog") == pytest.approx(0.5)
    # v2.0 no-answer rules: empty vs empty = 1, empty vs anything = 0
    assert f1_score("", "") == 1 and f1_score("the", "") == 1
    assert f1_score("", "Denver") == 0 and f1_score("Denver", "") == 0
    assert f1_score("red", "blue") == 0


# --------------------------------------------------------------------------- SQuAD: against the official scripts

def _qa(qid, answers, impossible=False):
    return {"id": qid, "question": f"question {qid}?", "is_impossible": impossible,
            "answers": [{"text": a, "answer_start": 0} for a in answers]}


V2_DATA = {"version": "v2.0", "data": [
    {"title": "Super_Bowl", "paragraphs": [
        {"context": "The Denver Broncos beat the Carolina Panthers in Santa Clara, California.",
         "qas": [_qa("q1", ["Denver Broncos", "Broncos", "the Denver Broncos"]),
                 _qa("q2", ["Santa Clara, California"]),
                 _qa("q3", [], impossible=True),
                 _qa("q4", [], impossible=True)]}]},
    {"title": "Misc", "paragraphs": [
        {"context": "The game was on February 7, 2016. The mascot ate an orange.",
         "qas": [_qa("q5", ["an orange"]),
                 _qa("q6", ["The"]),        # answerable, but its only answer normalises to "" (official quirk)
                 _qa("q7", ["February 7, 2016", "February 7", "7 February 2016"])]}]}]}

V2_PREDS = {
    "q1": "The Denver Broncos.",    # article + punctuation: exact
    "q2": "Santa Clara",            # partial: P = 1, R = 2/3 -> F1 = 0.8
    "q3": "",                       # right no-answer
    "q4": "1999",                   # answers an unanswerable question
    "q5": "",                       # no answer to an answerable question
    "q6": "",                       # gold "" after normalisation -> right
    "q7": "Feb 7 2016",             # best of three golds: [february 7 2016] -> 2 common of 3/3 -> 2/3
}
NA_PROBS = {"q1": 0.1, "q2": 0.6, "q3": 0.9, "q4": 0.3, "q5": 0.8, "q6": 0.2, "q7": 0.5}


def _write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def _load(path):
    """SQuAD JSON -> the QAExample list a reader would build; also the raw "data" for the official code."""
    data = json.loads(path.read_text())["data"]
    examples = [QAExample(qid=qa["id"], question=qa["question"], context=p["context"],
                          answers=[QAAnswer(a["text"], a["answer_start"]) for a in qa["answers"]],
                          is_impossible=qa.get("is_impossible", False), title=art["title"])
                for art in data for p in art["paragraphs"] for qa in p["qas"]]
    return examples, data


@pytest.fixture
def v2(tmp_path):
    examples, data = _load(_write(tmp_path, "dev-v2.0.json", V2_DATA))
    preds = json.loads(_write(tmp_path, "predictions.json", V2_PREDS).read_text())
    na_probs = json.loads(_write(tmp_path, "na_prob.json", NA_PROBS).read_text())
    return examples, data, preds, na_probs


def test_squad_v2_matches_official_and_hand(v2):
    examples, data, preds, _ = v2
    ours = squad_evaluate(examples, preds)
    assert ours == dict(official.evaluate_v2(data, preds))
    assert list(ours) == list(official.evaluate_v2(data, preds))   # same keys in the same order
    # by hand: exact q1, q3, q6 -> 3/7; f1 = 1 + .8 + 1 + 0 + 0 + 1 + 2/3 over 7
    assert ours["exact"] == pytest.approx(100 * 3 / 7)
    assert ours["f1"] == pytest.approx(100 * (3.8 + 2 / 3) / 7)
    # HasAns = q1, q2, q5, q6, q7; NoAns = q3, q4
    assert (ours["HasAns_total"], ours["NoAns_total"]) == (5, 2)
    assert ours["HasAns_exact"] == pytest.approx(40.0) and ours["NoAns_exact"] == pytest.approx(50.0)
    assert ours["HasAns_f1"] == pytest.approx(100 * (1 + .8 + 0 + 1 + 2 / 3) / 5)


def test_squad_v2_na_probs_and_best_threshold_match_official_and_hand(v2):
    examples, data, preds, na_probs = v2
    ours = squad_evaluate(examples, preds, na_probs=na_probs, na_prob_thresh=0.55)
    assert ours == dict(official.evaluate_v2(data, preds, na_probs, 0.55))
    # thresholded (na_prob > .55 -> no answer): q2 (.6) -> 0, q3 (.9) -> 1, q5 (.8) -> 0
    # f1 = q1 1 + q3 1 + q6 1 + q7 2/3 = 11/3 over 7
    assert ours["f1"] == pytest.approx(100 * (11 / 3) / 7)
    # best-threshold sweep for exact, start = 2 (the NoAns questions) with everything "no answer":
    # q1 .1 +1 -> 3 (best, t .1); q6 .2 +1 -> 4 (best, t .2); q4 .3 answers "1999" -> -1 -> 3;
    # q7, q2, q5 +0; q3 "" +0  => best 4/7 at .2
    assert ours["best_exact"] == pytest.approx(100 * 4 / 7) and ours["best_exact_thresh"] == 0.2
    # for f1: ... q4 -> 3; q7 .5 +2/3 -> 3.67; q2 .6 +.8 -> 4.47 (best, t .6); q5, q3 +0
    assert ours["best_f1"] == pytest.approx(100 * (3.8 + 2 / 3) / 7) and ours["best_f1_thresh"] == 0.6
    for thresh in (0.0, 0.25, 0.5, 1.0):
        assert squad_evaluate(examples, preds, na_probs, thresh) == dict(official.evaluate_v2(data, preds, na_probs, thresh))


def test_squad_v2_missing_prediction_scores_zero_where_official_crashes(v2):
    examples, data, preds, na_probs = v2
    partial = {k: v for k, v in preds.items() if k != "q3"}        # q3 was a right no-answer
    with pytest.raises(KeyError):
        official.evaluate_v2(data, partial)                        # the official script has no rule for this
    ours = squad_evaluate(examples, partial, na_probs={k: na_probs[k] for k in partial})
    # q3 now scores 0 but still counts: exact q1, q6 -> 2/7; NoAns: 0 of 2
    assert ours["total"] == 7 and ours["exact"] == pytest.approx(100 * 2 / 7)
    assert ours["NoAns_exact"] == 0.0 and ours["NoAns_total"] == 2
    # the sweep no longer credits q3: start 1 (q4 only); q1 +1, q6 +1 -> 3 best at .2; q4 -1 -> 2
    assert ours["best_exact"] == pytest.approx(100 * 3 / 7) and ours["best_exact_thresh"] == 0.2


def test_squad_v2_details():
    # an impossible question keeps its plausible answers out of the gold: only "" is right
    ex = [QAExample("a", "q?", "ctx", answers=[QAAnswer("ctx", 0)], is_impossible=True)]
    assert squad_evaluate(ex, {"a": ""}) == {"exact": 100.0, "f1": 100.0, "total": 1,
                                            "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 1}
    assert squad_evaluate([], {}) == {"exact": 0.0, "f1": 0.0, "total": 0}
    with pytest.raises(ValueError, match="na_probs"):
        squad_evaluate(ex, {"a": ""}, na_probs={})
    with pytest.raises(ValueError, match="'1.1' or '2.0'"):
        squad_evaluate(ex, {"a": ""}, version="3")


V1_DATA = {"version": "1.1", "data": [
    {"title": "T", "paragraphs": [
        {"context": "Tesla was born in Smiljan, in the Austrian Empire, on 10 July 1856.",
         "qas": [_qa("a", ["Smiljan", "Smiljan, Austrian Empire", "in Smiljan"]),
                 _qa("b", ["the Austrian Empire"]),
                 _qa("c", ["10 July 1856"]),
                 _qa("d", ["1856"]),
                 _qa("e", ["July"])]}]}]}
V1_PREDS = {
    "a": "Smiljan, in the Austrian Empire",  # best gold "Smiljan, Austrian Empire": [smiljan in austrian empire]
                                             # vs [smiljan austrian empire]: 3 common, P 3/4, R 1 -> 6/7
    "b": "Austrian empire!",                 # article and punctuation differences: exact
    # "c" missing: counts 0
    "d": "",                                 # empty prediction: 0
    "e": "the",                              # normalises to "": 0 (v1.1 has no no-answer rule)
}


def test_squad_v1_matches_official_and_hand(tmp_path):
    examples, data = _load(_write(tmp_path, "dev-v1.1.json", V1_DATA))
    preds = json.loads(_write(tmp_path, "predictions.json", V1_PREDS).read_text())
    ours = squad_evaluate(examples, preds, version="1.1")
    off = official.evaluate_v1(data, preds)
    assert (ours["exact"], ours["f1"]) == (off["exact_match"], off["f1"])
    assert ours["total"] == 5
    assert ours["exact"] == pytest.approx(100 * 1 / 5)             # only "b"
    assert ours["f1"] == pytest.approx(100 * (6 / 7 + 1) / 5)


def test_squad_v1_empty_pair_is_exact_but_not_f1():
    # v1.1 quirk kept: pred "" vs gold "a" -> both normalise to "": exact 1, F1 0 (v2.0 would give F1 1)
    ex = [QAExample("x", "q?", "a", answers=[QAAnswer("a", 0)])]
    data = [{"title": "", "paragraphs": [{"context": "a", "qas": [_qa("x", ["a"])]}]}]
    off = official.evaluate_v1(data, {"x": ""})
    ours = squad_evaluate(ex, {"x": ""}, version="1.1")
    assert (ours["exact"], ours["f1"]) == (off["exact_match"], off["f1"]) == (100.0, 0.0)


WORDS = ["the", "a", "Denver", "Broncos", "broncos", "7", "Feb.", "!", "an", "orange", "", " "]
answer_text = st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(answer_text, max_size=3), answer_text,
                          st.sampled_from([0.0, 0.2, 0.5, 0.5, 0.9])), min_size=1, max_size=8),
       st.sampled_from([0.0, 0.5, 1.0]))
def test_squad_v2_equals_official_on_random_data(rows, thresh):
    # random golds (possibly none = unanswerable, possibly normalising to ""), predictions and tied na_probs
    qas = [_qa(f"q{i}", golds, impossible=not golds) for i, (golds, _, _) in enumerate(rows)]
    data = [{"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}]
    preds = {f"q{i}": pred for i, (_, pred, _) in enumerate(rows)}
    na_probs = {f"q{i}": p for i, (_, _, p) in enumerate(rows)}
    examples = [QAExample(qa["id"], "", "c", [QAAnswer(a["text"], 0) for a in qa["answers"]], qa["is_impossible"])
                for qa in qas]
    assert squad_evaluate(examples, preds) == dict(official.evaluate_v2(data, preds))
    assert squad_evaluate(examples, preds, na_probs, thresh) == dict(official.evaluate_v2(data, preds, na_probs, thresh))
    v1 = [(qa, ex) for qa, ex in zip(qas, examples) if qa["answers"]]
    if v1:
        data1 = [{"title": "t", "paragraphs": [{"context": "c", "qas": [qa for qa, _ in v1]}]}]
        ours, off = squad_evaluate([ex for _, ex in v1], preds, version="1.1"), official.evaluate_v1(data1, preds)
        assert (ours["exact"], ours["f1"]) == (off["exact_match"], off["f1"])


# --------------------------------------------------------------------------- edge cases: SQuAD v2.0 scoring, correlations

def test_the_best_threshold_is_searched_on_the_raw_null_score_differences():
    """Two questions whose null-score differences (45, 40) a sigmoid would both round to 1.0 in float64: the
    tie then let the official search reach 100, which no threshold gives. On the raw scale: 50."""
    from electra.data.examples import QAAnswer, QAExample
    from electra.finetuning.tasks import QATask
    examples = [QAExample("has", "q?", "Paris is big", [QAAnswer("Paris", 0)]),
                QAExample("no", "q?", "France", [], is_impossible=True)]
    answers, null_diff = {"has": "Paris", "no": "France"}, {"has": 45.0, "no": 40.0}
    squashed = {q: 1 / (1 + math.exp(-d)) for q, d in null_diff.items()}
    assert squashed["has"] == squashed["no"] == 1.0  # the tie
    assert squad_evaluate(examples, answers, na_probs=squashed)["best_exact"] == 100.0  # the old, wrong value
    task = QATask(state={"version": "2.0", "labels": []})
    task._decode = lambda examples, features, outputs: (answers, {}, null_diff)
    scored = task.metrics(examples, None, None)
    assert scored["best_exact"] == 50.0 and scored["exact"] == 50.0
    # the threshold is on null_score_diff_threshold's scale: "no answer" above it; here, answering both (40
    # and 45 are <= 45) or neither is best, and neither comes first: the reported floor is below both
    assert scored["best_exact_thresh"] == 39.0


def test_a_v1_trained_task_scores_a_v2_file_as_v2(tmp_path):
    from electra.finetuning.tasks import QATask
    path = tmp_path / "v2.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "abc", "qas": [
        {"id": "a", "question": "?", "answers": [], "is_impossible": True}]}]}]}))
    task = QATask(state={"version": "1.1", "labels": []})
    examples = task.read_eval(path)
    assert task.eval_version == "2.0" and task.version == "1.1" and sum(task.warnings.values()) == 1
    task._decode = lambda examples, features, outputs: ({"a": ""}, {}, {"a": 3.0})
    assert task.metrics(examples, None, None)["NoAns_exact"] == 100.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_correlations_of_non_finite_values_are_nan(bad):
    assert math.isnan(pearson([1, bad, 3], [1, 2, 3])) and math.isnan(spearman([1, bad, 3], [1, 2, 3]))
    assert math.isnan(pearson([1, 2, 3], [1, 2, bad])) and math.isnan(spearman([1, 2, 3], [1, 2, bad]))


@pytest.mark.parametrize("scale", [1.0, 1e154, 1e200, 1e-154, 1e-200])
def test_pearson_is_scale_safe(scale):
    x = np.array([0.3, 1.7, 2.2, 3.9, 5.1, 6.0])
    y = np.array([0.5, 1.9, 2.0, 4.4, 4.8, 6.3])
    expected = float(np.corrcoef(x, y)[0, 1])  # ordinary magnitudes: 0.98...
    assert expected > 0.98
    assert pearson(x * scale, y * scale) == pytest.approx(expected, rel=1e-12)
    assert spearman(x * scale, y * scale) == pytest.approx(1.0)


def test_pearson_of_two_points_one_ulp_apart_is_the_sign_of_the_slope():
    a, b = 1.0, float(np.nextafter(1.0, 2.0))
    assert pearson([a, b], [a, b]) == 1.0 and pearson([a, b], [b, a]) == -1.0
    scipy_stats = pytest.importorskip("scipy.stats")
    assert pearson([a, b], [a, b]) == scipy_stats.pearsonr([a, b], [a, b])[0]
