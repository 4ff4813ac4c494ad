"""The Python API: the command's verbs as functions, and `electra.load` to use the results.
Mistakes raise UserError with the command's message; nothing calls sys.exit."""

import json

import pytest
from synthetic import SMALL_RUN
from toy_tasks import write_sst

import electra
from electra.errors import UserError

WORDS = "the whale ship sea captain white water boat night old long great deep wind sail".split()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Raw text -> tokenizer -> data -> a short pre-training run -> a short fine-tuning run, all through the API."""
    root = tmp_path_factory.mktemp("api")
    text = root / "corpus.txt"
    text.write_text("\n".join(" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(12)) for i in range(400))
                    + "\n")
    tok = electra.train_tokenizer(text, 200, root / "tok", progress=False)
    data = electra.build_data([text], tok, root / "data", max_seq_length=32, progress=False)
    settings = dict(s.split("=", 1) for s in SMALL_RUN)
    run = electra.pretrain(data, root / "run", preset="tiny", max_steps=4, overrides=settings, progress=False)
    train, dev = write_sst(root / "train.tsv", 120, 0), write_sst(root / "dev.tsv", 40, 1)
    results = electra.finetune(run, "classification", train, dev, root / "ft", seeds=1, progress=False,
                               overrides=["epochs=8", "batch_size=16", "learning_rate=3e-3",
                                          "layerwise_lr_decay=1.0", "eval_every=8"])
    return {"root": root, "run": run, "results": results, "dev": dev}


def test_the_pipeline_runs_from_python_and_writes_what_the_commands_write(pipeline):
    root, run = pipeline["root"], pipeline["run"]
    assert run == root / "run" and (run / "checkpoints").is_dir()
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["hidden_size"] == 32 and config["train"]["max_steps"] == 4  # the dict overrides applied
    assert pipeline["results"] == json.loads((root / "ft" / "results.json").read_text())
    disc, gen = electra.export(run, root / "hf")
    assert (disc / "model.safetensors").is_file() and (gen / "config.json").is_file()


def test_load_gives_a_model_that_predicts_and_evaluates(pipeline):
    model = electra.load(pipeline["root"] / "ft")
    assert isinstance(model, electra.FineTunedModel) and model.task.name == "classification"
    rows = model.predict(["the whale is great", ("a ship", "the sea")])
    assert len(rows) == 2
    for row in rows:
        assert row["label"] in model.task.labels
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    best = pipeline["results"]["seeds"][0]
    assert not best["collapsed"]  # the toy task is learnt, so the predictions below depend on the input
    assert model.evaluate(pipeline["dev"])["accuracy"] == pytest.approx(best["accuracy"])


def test_load_of_a_run_or_an_export_is_its_discriminator(pipeline):
    for path in (pipeline["run"], pipeline["root"] / "hf"):
        disc = electra.load(path)
        assert isinstance(disc, electra.Discriminator)
        scored = disc.replaced_probabilities("the old ship")
        assert [t for t, _ in scored] == ["the", "old", "ship"] and all(0 < p < 1 for _, p in scored)


@pytest.mark.parametrize("call, message", [
    (lambda p: electra.pretrain(p / "data", p / "x", preset="enormous", max_steps=1, progress=False), "preset"),
    (lambda p: electra.pretrain(p / "data", p / "x", preset="tiny", overrides="train.seed=1"), "overrides"),
    (lambda p: electra.pretrain(p / "data", p / "x", preset="tiny", overrides={"train.no_such_key": 1}),
     "no_such_key"),
    (lambda p: electra.finetune(p / "run", "summarisation", p / "train.tsv", p / "dev.tsv", p / "y"), "summarisation"),
    (lambda p: electra.finetune(p / "run", "classification", p / "train.tsv", p / "dev.tsv", p / "y", seeds=0),
     "seeds"),
    (lambda p: electra.load(p / "nowhere"), "no such folder"),
    (lambda p: electra.load(p / "ft").predict([3]), r"inputs\[0\]: a classification input"),
    (lambda p: electra.load(p / "ft", device="quantum"), "device"),
])
def test_mistakes_raise_user_error_and_never_exit(pipeline, call, message):
    with pytest.raises(UserError, match=message):
        call(pipeline["root"])
