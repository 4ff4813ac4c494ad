"""`electra export-onnx`: every task family exported, checked against PyTorch, quantised, scored, and run
wherever a fine-tuned folder is (predict, evaluate, electra.load). Tiny fine-tuned toy models (tests/toy_tasks.py)."""

import json

import numpy as np
import pytest
from toy_tasks import save_toy_model, write_conll, write_squad, write_sst

import electra
from electra.cli import main
from electra.errors import UserError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

QA_SET = ["epochs=1", "batch_size=16", "max_seq_length=64", "doc_stride=32", "max_query_length=16"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Fine-tuned classifier, tagger and QA model, their dev files and their fp32 ONNX exports."""
    root = tmp_path_factory.mktemp("onnx")
    (root / "toy").mkdir()
    hf = save_toy_model(root / "toy", [], 128)
    made = {}
    for task, writer, suffix, extra in (("classification", write_sst, "tsv", []), ("tagging", write_conll, "conll", []),
                                        ("qa", write_squad, "json", QA_SET)):
        train, dev = writer(root / f"{task}-train.{suffix}", 48, 0), writer(root / f"{task}-dev.{suffix}", 24, 1)
        electra.finetune(hf, task, train, dev, root / task, overrides=["epochs=1", "batch_size=16", *extra],
                         progress=False)
        record = electra.export_onnx(root / task, root / f"{task}-onnx")
        made[task] = {"ft": root / task, "dev": dev, "onnx": root / f"{task}-onnx", "record": record}
    return made


ITEMS = {
    "classification": ["good film with fine music", "a boring film", "music", " ".join(["film"] * 300)],
    "tagging": ["the cat sat on the mat", ["a", "dog"], "word " * 200],
    "qa": [{"question": "what is the answer ?", "context": "some words . the answer is cat . more words"},
           {"question": "what is the answer ?", "context": "the answer is dog . " * 30}],
}


@pytest.mark.parametrize("task", ["classification", "tagging", "qa"])
def test_an_export_gives_pytorchs_predictions(models, task):
    m = models[task]
    assert max(m["record"]["parity"]["fp32"].values()) <= 1e-4
    torch_model, onnx_model = electra.load(m["ft"]), electra.load(m["onnx"])
    assert (torch_model.backend, onnx_model.backend) == ("pytorch", "onnx-fp32")
    ours, theirs = torch_model.predict(ITEMS[task]), onnx_model.predict(ITEMS[task])
    assert len(ours) == len(theirs) == len(ITEMS[task])
    for a, b in zip(ours, theirs):
        if task == "classification":
            assert a["label"] == b["label"]
            assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) <= 1e-4
        elif task == "tagging":
            assert a == b
        else:
            assert a["answer"] == b["answer"] if "answer" in a else a == b
    assert onnx_model.evaluate(m["dev"]) == pytest.approx(torch_model.evaluate(m["dev"]), abs=1e-6)


def test_int8_with_dev_scores_both_and_runs_through_the_cli(models, tmp_path, capsys):
    m = models["classification"]
    out = tmp_path / "int8"
    assert main(["export-onnx", str(m["ft"]), "--out", str(out), "--int8", "--dev", str(m["dev"]), "--quiet"]) == 0
    record = json.loads((out / "onnx.json").read_text())
    assert record["default"] == "int8" and set(record["files"]) == {"fp32", "int8"}
    assert record["bytes"]["int8"] < record["bytes"]["fp32"]
    assert set(record["dev"]) >= {"fp32", "int8", "int8_loss_points"}
    card = (out / "README.md").read_text()
    assert "## ONNX Runtime" in card and "model.int8.onnx" in card and "Dev accuracy" in card
    assert electra.load(out).backend == "onnx-int8"
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--input", str(m["dev"]), "--out", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(set(r["probabilities"]) == {"0", "1"} for r in rows)
    assert main(["evaluate", "--model", str(out), "--data", str(m["dev"]), "--out", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["accuracy"] == pytest.approx(
        record["dev"]["int8"]["accuracy"])


def test_int8_losing_more_than_a_point_is_reported(models, tmp_path, monkeypatch, capsys):
    import electra.finetuning.onnx_export as ox

    monkeypatch.setattr(ox, "INT8_WARN_POINTS", -1.0)  # any int8 result counts as a loss here
    capsys.readouterr()
    electra.export_onnx(models["classification"]["ft"], tmp_path / "o", int8=True, dev=models["classification"]["dev"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: int8 loses") and "model.onnx" in err[0]


def test_an_export_that_differs_from_pytorch_is_refused_and_nothing_written(models, tmp_path, monkeypatch):
    import electra.finetuning.onnx_export as ox

    monkeypatch.setattr(ox, "PARITY_TOLERANCE", -1.0)  # no difference is small enough
    with pytest.raises(UserError, match="refused: ONNX Runtime's outputs differ"):
        electra.export_onnx(models["classification"]["ft"], tmp_path / "o")
    assert not (tmp_path / "o").exists() and not list(tmp_path.iterdir())


def test_the_parity_check_sees_padding_leak(models):
    """The check compares padded batches with PyTorch: a model whose outputs depend on the padding fails it."""
    from electra.data.tokenizer import special_token_ids
    from electra.finetuning.onnx_export import _sample_features, max_difference

    m = electra.load(models["classification"]["ft"])
    onnx_model = electra.load(models["classification"]["onnx"]).model
    _, features, _ = _sample_features(m.task, m.tokenizer, 64, None)
    pad = special_token_ids(m.tokenizer)["pad"]

    def leaky(ids, mask, types):  # a result that moves with the amount of padding in the batch
        return onnx_model(ids, mask, types) + 1e-2 * (1 - mask).sum(1, keepdim=True)

    assert max_difference(m.model, onnx_model, features, pad)["padded"] <= 1e-4
    assert max_difference(m.model, leaky, features, pad)["padded"] > 1e-3
    assert max_difference(m.model, leaky, features, pad)["unpadded"] <= 1e-4


def test_mistakes_are_one_line(models, tmp_path, capsys):
    m = models["classification"]

    def refused(*args):
        capsys.readouterr()
        code = main([*map(str, args), "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        return err[0]

    assert "not a fine-tuned model" in refused("export-onnx", tmp_path, "--out", tmp_path / "x")
    assert "holds the model" in refused("export-onnx", m["ft"], "--out", m["ft"])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert "--overwrite" in refused("export-onnx", m["ft"], "--out", mine)
    assert (mine / "notes.txt").read_text() == "keep"
    assert "already an ONNX export" in refused("export-onnx", m["onnx"], "--out", tmp_path / "y")
    assert "no such file" in refused("export-onnx", m["ft"], "--out", tmp_path / "z", "--dev", tmp_path / "nope")
    broken = tmp_path / "broken"
    import shutil
    shutil.copytree(m["onnx"], broken)
    (broken / "model.onnx").write_bytes(b"not onnx")
    assert "model.onnx" in refused("predict", "--model", broken, "--input", m["dev"], "--out", tmp_path / "p.jsonl")
    (broken / "onnx.json").write_text("[]")
    assert "onnx.json" in refused("evaluate", "--model", broken, "--data", m["dev"])


def test_a_missing_extra_is_one_line(models, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name.startswith("onnxruntime"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(UserError, match=r"pip install 'electra\[onnx\]'"):
        electra.export_onnx(models["classification"]["ft"], tmp_path / "o")
    with pytest.raises(UserError, match=r"pip install 'electra\[onnx\]'"):
        electra.load(models["classification"]["onnx"])


@pytest.mark.parametrize("task", ["classification", "tagging", "qa"])
def test_onnxruntime_fuses_attention_and_layer_norms_in_the_export(models, task):
    """Every layer's attention is one of ONNX Runtime's Attention operators in model.onnx (with the raw 2-D mask),
    and onnx.json records what was fused."""
    import onnx

    layers = electra.load(models[task]["ft"]).model.config.num_hidden_layers
    graph = onnx.load(str(models[task]["onnx"] / "model.onnx")).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("Attention") == layers and "Softmax" not in ops
    assert ops.count("SkipLayerNormalization") >= 2 * layers  # (and the embeddings' sum)
    fused = models[task]["record"]["fused"]
    assert fused["Attention"] == layers and fused["SkipLayerNormalization"] == ops.count("SkipLayerNormalization")
    assert json.loads((models[task]["onnx"] / "onnx.json").read_text())["fused"] == fused


def test_outputs_keep_their_dynamic_axes(models):
    import onnxruntime as ort

    session = ort.InferenceSession(str(models["tagging"]["onnx"] / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    for batch, length in ((1, 1), (5, 37)):
        feed = {i.name: np.ones((batch, length), dtype=np.int64) for i in session.get_inputs()}
        (logits,) = session.run(None, feed)
        assert logits.shape[:2] == (batch, length)
