"""Task files as parquet and `datasets` folders: the same examples as the TSV / CoNLL /
SQuAD files, datasets' ClassLabel ints read as their names, and finetune / evaluate / predict from them."""

import json

import pytest

from electra.data.readers import read_classification, read_conll, read_squad
from electra.errors import UserError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
datasets = pytest.importorskip("datasets")

TEXTS = ["a fine film", "dull and long", "我们喜欢这部电影", "the acting, \"superb\"\tand tabbed"]
LABELS = ["pos", "neg", "pos", "pos"]


def test_classification_from_parquet_and_from_a_datasets_folder_with_class_labels(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"{t.replace(chr(9), ' ')}\t{label}\n"
                                                  for t, label in zip(TEXTS, LABELS)))
    pq.write_table(pa.table({"sentence": [t.replace("\t", " ") for t in TEXTS], "label": LABELS}),
                   tmp_path / "t.parquet")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    ds = datasets.Dataset.from_dict({"text": [t.replace("\t", " ") for t in TEXTS],
                                     "label": [["neg", "pos"].index(x) for x in LABELS]}, features=features)
    ds.save_to_disk(str(tmp_path / "ds"))
    reference, _ = read_classification(tsv)
    for source in (tmp_path / "t.parquet", tmp_path / "ds"):
        examples, info = read_classification(source)
        assert [(e.text, e.label) for e in examples] == [(e.text, e.label) for e in reference]
        assert info["format"] == "table" and info["labels"] == ["neg", "pos"]
        assert examples[0].source == f"{source}:1"
    with pytest.raises(UserError, match=r"no \"text\" or \"sentence\" field; give --text-column \(fields: 'body'\)"):
        pq.write_table(pa.table({"body": TEXTS}), tmp_path / "bad.parquet")
        read_classification(tmp_path / "bad.parquet")
    with pytest.raises(UserError, match="is an index, but columns have names"):
        read_classification(tmp_path / "t.parquet", text_column=0)
    datasets.DatasetDict({"train": ds, "validation": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(UserError, match="a DatasetDict; give one split's folder"):
        read_classification(tmp_path / "dd")


def test_tagging_from_a_datasets_folder_like_conll2003(tmp_path):
    tags = ["O", "B-PER", "I-PER", "B-LOC"]
    features = datasets.Features({"id": datasets.Value("string"),
                                  "tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=tags))})
    ds = datasets.Dataset.from_dict({"id": ["0", "1"], "tokens": [["John", "Smith", "went"], ["to", "北京"]],
                                     "ner_tags": [[1, 2, 0], [0, 3]]}, features=features)
    ds.save_to_disk(str(tmp_path / "ner"))
    conll = tmp_path / "ner.conll"
    conll.write_text("John\tB-PER\nSmith\tI-PER\nwent\tO\n\nto\tO\n北京\tB-LOC\n")
    got = read_conll(tmp_path / "ner")
    assert [(e.words, e.tags) for e in got] == [(e.words, e.tags) for e in read_conll(conll)]
    assert read_conll(tmp_path / "ner", has_labels=False)[1].tags is None
    with pytest.raises(UserError, match=r"no tag column 'pos'; give --tag-column "
                                        r"\(columns: 'id', 'tokens', 'ner_tags'\)"):
        read_conll(tmp_path / "ner", tag_column="pos")
    pq.write_table(pa.table({"words": [["a", "b"]], "tags": [["X"]]}), tmp_path / "short.parquet")
    with pytest.raises(UserError, match=r"row 1: 'tags' must be a list of one tag per token \(2 tokens\)"):
        read_conll(tmp_path / "short.parquet")


def test_squad_from_a_datasets_folder(tmp_path):
    rows = {"id": ["q1", "q2"], "title": ["T", "T"], "context": ["The cat sat on the mat.", "Nothing here."],
            "question": ["Where did the cat sit?", "Who?"],
            "answers": [{"text": ["on the mat"], "answer_start": [12]}, {"text": [], "answer_start": []}]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "squad"))
    examples, version = read_squad(tmp_path / "squad")
    assert version == "2.0" and [e.qid for e in examples] == ["q1", "q2"]
    assert examples[0].answers[0].text == "on the mat" and examples[0].answers[0].start == 12
    assert examples[1].is_impossible and not examples[0].is_impossible


def test_finetune_evaluate_and_predict_from_tables(tmp_path):
    from toy_tasks import save_toy_model, write_sst

    from electra.cli import main
    (tmp_path / "m").mkdir()
    model = save_toy_model(tmp_path / "m", [], 64)
    for name, n, seed in (("train", 96, 0), ("dev", 24, 1)):
        lines = write_sst(tmp_path / f"{name}.tsv", n, seed).read_text().splitlines()[1:]
        texts, labels = zip(*(line.split("\t") for line in lines))
        pq.write_table(pa.table({"sentence": list(texts), "label": list(labels)}), tmp_path / f"{name}.parquet")
        datasets.Dataset.from_dict({"sentence": list(texts), "label": list(labels)}).save_to_disk(
            str(tmp_path / f"{name}_ds"))
    assert main(["finetune", "--model", str(model), "--task", "classification", "--train",
                 str(tmp_path / "train.parquet"), "--dev", str(tmp_path / "dev_ds"), "--out", str(tmp_path / "ft"),
                 "--set", "epochs=2", "--set", "batch_size=16", "--quiet"]) == 0
    assert main(["evaluate", "--model", str(tmp_path / "ft"), "--data", str(tmp_path / "dev.parquet"),
                 "--out", str(tmp_path / "eval.json")]) == 0
    dev = json.loads((tmp_path / "ft" / "results.json").read_text())["seeds"][0]["accuracy"]
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == pytest.approx(dev)
    assert main(["predict", "--model", str(tmp_path / "ft"), "--input", str(tmp_path / "dev_ds"),
                 "--out", str(tmp_path / "p.jsonl"), "--quiet"]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 24
