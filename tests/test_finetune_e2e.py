"""Fine-tuning end to end on small synthetic tasks: train, select, export, evaluate, predict, bad input.

The model is a tiny random ELECTRA saved as a transformers folder (the "any local transformers
folder" path); the tasks are learnable toy problems, so a few epochs must solve them.
"""

import json
import random

import pytest
import torch
from toy_tasks import FILLER, GOOD, save_toy_model, sentence, write_conll, write_squad, write_sst

from electra.cli import main
from electra.finetuning.finetune import finetune
from electra.finetuning.predict import load_finetuned

transformers = pytest.importorskip("transformers")

FAST = ["epochs=10", "batch_size=16", "learning_rate=3e-3", "layerwise_lr_decay=1.0", "eval_every=15"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tasks")
    return {
        "sst_train": write_sst(d / "train.tsv", 240, 0), "sst_dev": write_sst(d / "dev.tsv", 60, 1),
        "pos_train": write_conll(d / "train.conll", 200, 0), "pos_dev": write_conll(d / "dev.conll", 40, 1),
        "qa_train": write_squad(d / "train.json", 120, 0, broken=3), "qa_dev": write_squad(d / "dev.json", 30, 1),
        "dir": d,
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, files):
    """A tiny random ELECTRA discriminator with a tokenizer trained on the toy texts, as transformers saves it."""
    return save_toy_model(tmp_path_factory.mktemp("model"), ["what", "answer", "is", "zebra", "."], 128)


@pytest.fixture(scope="module")
def sst_run(model_dir, files, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "sst"
    finetune(model_dir, "classification", files["sst_train"], files["sst_dev"], out, seeds=2, overrides=FAST,
             progress=False)
    return out


def _hf_logits(folder, cls_name, batch):
    hf = getattr(transformers, cls_name).from_pretrained(folder).eval()
    with torch.no_grad():
        return hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  token_type_ids=batch["token_type_ids"])


def _ours_and_batch(folder, path, n=8):
    from electra.finetuning.tasks import collate

    task, model, tok, max_len = load_finetuned(folder, torch.device("cpu"))
    examples = task.read_eval(path)[:n]
    feats = task.featurize(examples, tok, max_len, training=False)
    batch = collate(feats, 0)
    with torch.no_grad():
        ours = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    return ours, batch


def test_classification_learns_selects_best_and_summarises_seeds(sst_run):
    results = json.loads((sst_run / "results.json").read_text())
    assert [r["seed"] for r in results["seeds"]] == [1, 2]
    assert all(r["accuracy"] >= 0.9 for r in results["seeds"]), results["seeds"]
    s = results["summary"]["accuracy"]
    accs = sorted(r["accuracy"] for r in results["seeds"])
    assert s["median"] == pytest.approx(sum(accs) / 2) and s["min"] == accs[0] and s["max"] == accs[1]
    assert results["collapsed_seeds"] == []
    best = max(results["seeds"], key=lambda r: r["accuracy"])
    assert json.loads((sst_run / "model" / "task.json").read_text())["seed"] == best["seed"]
    # the log holds the evaluations, and the saved best step is one of them with the best score
    evals = [json.loads(line) for line in (sst_run / f"seed-{best['seed']}" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r.get("event") == "eval"]
    assert max(r["accuracy"] for r in evals) == best["accuracy"]
    assert best["best_step"] in [r["step"] for r in evals]


def test_classifier_export_loads_in_transformers_with_same_logits(sst_run, files):
    ours, batch = _ours_and_batch(sst_run / "model", files["sst_dev"])
    theirs = _hf_logits(sst_run / "model", "ElectraForSequenceClassification", batch).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    config = json.loads((sst_run / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"} and config["architectures"] == ["ElectraForSequenceClassification"]


def test_evaluate_and_predict_commands(sst_run, files, tmp_path, capsys):
    assert main(["evaluate", "--model", str(sst_run), "--data", str(files["sst_dev"]),
                 "--out", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    best = json.loads((sst_run / "model" / "task.json").read_text())["dev"]
    assert metrics["accuracy"] == pytest.approx(best["accuracy"]) and metrics["examples"] == 60
    assert {"f1", "mcc", "f1_macro"} <= set(metrics)

    texts = tmp_path / "new.txt"
    texts.write_text("the film was great\nthe film was awful and dull\n")
    assert main(["predict", "--model", str(sst_run), "--input", str(texts), "--out", str(tmp_path / "p.jsonl"),
                 "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["the film was great", "the film was awful and dull"]
    assert [r["label"] for r in rows] == ["1", "0"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)


def test_tagging_end_to_end_and_export(model_dir, files, tmp_path):
    out = tmp_path / "pos"
    results = finetune(model_dir, "tagging", files["pos_train"], files["pos_dev"], out, overrides=FAST, progress=False)
    assert results["seeds"][0]["token_accuracy"] >= 0.95
    ours, batch = _ours_and_batch(out, files["pos_dev"])
    theirs = _hf_logits(out / "model", "ElectraForTokenClassification", batch).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-4, rtol=0)
    inp = tmp_path / "words.txt"
    inp.write_text("dog runs cat eats\ntree\n")
    assert main(["predict", "--model", str(out), "--input", str(inp), "--out", str(tmp_path / "t.jsonl"), "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert rows[0] == {"words": ["dog", "runs", "cat", "eats"], "tags": ["NN", "VB", "NN", "VB"]}
    assert rows[1]["tags"] == ["NN"]


def test_qa_end_to_end_skips_missing_answers_and_exports(model_dir, files, tmp_path, capsys):
    out = tmp_path / "qa"
    results = finetune(model_dir, "qa", files["qa_train"], files["qa_dev"], out,
                       overrides=["epochs=8", "batch_size=16", "learning_rate=3e-3", "max_seq_length=64",
                                  "max_query_length=16", "layerwise_lr_decay=1.0"],
                       progress=False)
    err = capsys.readouterr().err
    assert "3 examples skipped: the answer text is not in the context" in err
    assert {"exact", "f1"} <= set(results["seeds"][0])
    assert results["seeds"][0]["f1"] >= 80, results["seeds"][0]  # a toy task: the answer follows "is"
    ours, batch = _ours_and_batch(out, files["qa_dev"])
    theirs = _hf_logits(out / "model", "ElectraForQuestionAnswering", batch)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[0][real], theirs.start_logits[real], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours[1][real], theirs.end_logits[real], atol=1e-4, rtol=0)
    assert main(["predict", "--model", str(out), "--input", str(files["qa_dev"]), "--out", str(tmp_path / "a.jsonl"),
                 "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and {"id", "answer"} <= set(rows[0])
    dev = json.loads(files["qa_dev"].read_text())["data"][0]["paragraphs"]
    contexts = {p["qas"][0]["id"]: p["context"] for p in dev}
    for r in rows:
        if r["answer"]:
            assert contexts[r["id"]][r["start"]:r["end"]] == r["answer"]  # character span into the context
    # A SQuAD v2.0 file is scored as v2.0 (the file's version) even by this v1.1-trained model, with a warning
    v2 = json.loads(files["qa_dev"].read_text())
    v2["version"] = "v2.0"
    v2["data"][0]["paragraphs"].append({"context": "nothing to see here .", "qas": [
        {"id": "none", "question": "what is the answer ?", "answers": [], "is_impossible": True}]})
    (tmp_path / "dev-v2.json").write_text(json.dumps(v2))
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", str(tmp_path / "dev-v2.json"),
                 "--out", str(tmp_path / "v2.json")]) == 0
    scored = json.loads((tmp_path / "v2.json").read_text())
    assert scored["total"] == 31 and scored["NoAns_total"] == 1 and {"best_f1", "best_f1_thresh"} <= set(scored)
    assert "scored as SQuAD v2.0 by a model trained on v1.1" in capsys.readouterr().err


def test_scratch_init_keeps_the_architecture_but_not_the_weights(model_dir, files, tmp_path):
    from safetensors.torch import load_file

    source = load_file(str(model_dir / "model.safetensors"))["electra.embeddings.word_embeddings.weight"]
    tiny_lr = ["epochs=1", "learning_rate=1e-12", "batch_size=64"]
    for init in ("pretrained", "scratch"):
        finetune(model_dir, "classification", files["sst_train"], files["sst_dev"], tmp_path / init,
                 overrides=tiny_lr + [f"init={init}"], progress=False)
        emb = load_file(str(tmp_path / init / "model" / "model.safetensors"))["electra.embeddings.word_embeddings.weight"]
        assert emb.shape == source.shape
        assert torch.allclose(emb, source, atol=1e-6) == (init == "pretrained")


def test_collapse_to_the_majority_class_is_reported(model_dir, files, tmp_path, capsys):
    rng = random.Random(3)
    skewed = tmp_path / "skewed.tsv"
    skewed.write_text("sentence\tlabel\n" + "".join(f"{sentence(rng, 1)}\t{int(i % 10 == 0)}\n" for i in range(200)))
    # learning rate 0: the head never moves; a random head on near-identical [CLS] states predicts one class
    results = finetune(model_dir, "classification", skewed, skewed, tmp_path / "c", seeds=1,
                       overrides=["epochs=1", "learning_rate=1e-12"], progress=False)
    out = capsys.readouterr()
    assert results["collapsed_seeds"] == [1]
    assert "seed 1 collapsed: it predicts" in out.err and "(collapsed to the majority class)" in out.out


def test_bad_input_is_one_line_and_writes_nothing(model_dir, files, tmp_path, capsys):
    def run(*args):
        code = main(["finetune", "--model", str(model_dir), "--quiet", *args])
        err = capsys.readouterr().err.strip()
        return code, err

    bad_dev = write_sst(tmp_path / "bad_dev.tsv", 4, 2, extra_label="7")
    code, err = run("--task", "classification", "--train", str(files["sst_train"]), "--dev", str(bad_dev),
                    "--out", str(tmp_path / "o1"))
    assert code == 2 and "bad_dev.tsv:6" in err and "'7'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o1").exists()

    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("sentence\tlabel\ngood film\t1\nno label here\n")
    code, err = run("--task", "classification", "--train", str(ragged), "--dev", str(ragged), "--out", str(tmp_path / "o2"))
    assert code == 2 and "ragged.tsv:3" in err and len(err.splitlines()) == 1

    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    code, err = run("--task", "classification", "--train", str(empty), "--dev", str(empty), "--out", str(tmp_path / "o3"))
    assert code == 2 and "empty.tsv" in err and len(err.splitlines()) == 1

    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious.txt").write_text("mine")
    code, err = run("--task", "classification", "--train", str(files["sst_train"]), "--dev", str(files["sst_dev"]),
                    "--out", str(keep))
    assert code == 2 and "already exists" in err and (keep / "precious.txt").read_text() == "mine"


def test_long_texts_are_truncated_with_one_warning(model_dir, files, tmp_path, capsys):
    rng = random.Random(5)
    long = tmp_path / "long.tsv"
    rows = [f"{sentence(rng, i % 2)}\t{i % 2}" for i in range(40)]
    rows += [" ".join([sentence(rng, 1)] * 30) + "\t1" for _ in range(3)]  # ~200 words: over 64 tokens
    long.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    finetune(model_dir, "classification", long, files["sst_dev"], tmp_path / "o", progress=False,
             overrides=["epochs=1", "max_seq_length=64"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "truncated" in line]
    assert warnings == [f"warning: {long}: 3 texts longer than max_seq_length, truncated (raise --set max_seq_length=...)"]


def test_tokenizer_larger_than_the_model_vocabulary_is_refused(model_dir, files, tmp_path, capsys):
    import shutil

    small = tmp_path / "small"
    shutil.copytree(model_dir, small)
    config = json.loads((small / "config.json").read_text())
    config["vocab_size"] = 50
    (small / "config.json").write_text(json.dumps(config))
    code = main(["finetune", "--model", str(small), "--task", "classification", "--train", str(files["sst_train"]),
                 "--dev", str(files["sst_dev"]), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "tokens but the model's vocab_size is 50" in err or "vocab" in err
    assert not (tmp_path / "o").exists()


def test_inspect_prints_a_probability_per_token(model_dir, capsys):
    assert main(["inspect", "--model", str(model_dir), "--color", "never", "the film was great"]) == 0
    from electra.data.tokenizer import load_tokenizer

    lines = capsys.readouterr().out.strip().splitlines()
    tokens = load_tokenizer(model_dir).encode("the film was great").tokens[1:-1]  # without [CLS] and [SEP]
    assert [line.split()[0] for line in lines] == tokens and len(tokens) >= 4
    assert all(0.0 <= float(line.split()[1]) <= 1.0 for line in lines)


def test_regression_on_an_stsb_layout_exports_as_regression(model_dir, tmp_path):
    rng = random.Random(7)

    def write(path, n):
        rows = ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"]
        for i in range(n):
            k = rng.randint(0, 5)  # the score counts the GOOD words in the first sentence
            s1 = " ".join(rng.sample(FILLER, 5 - k) + rng.sample(GOOD, k))
            rows.append(f"{i}\tmain\tx\t2012\t{i}\tnone\tnone\t{s1}\t{' '.join(rng.sample(FILLER, 4))}\t{k + 0.2:.3f}")
        path.write_text("\n".join(rows) + "\n")
        return path

    out = tmp_path / "sts"
    results = finetune(model_dir, "classification", write(tmp_path / "train.tsv", 300), write(tmp_path / "dev.tsv", 60),
                       out, overrides=FAST, progress=False)
    assert results["primary_metric"] == "spearman" and results["seeds"][0]["spearman"] > 0.8
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["problem_type"] == "regression"
    hf = transformers.ElectraForSequenceClassification.from_pretrained(out / "model")
    assert hf.num_labels == 1
