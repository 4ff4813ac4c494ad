"""Reliability of fine-tuning (docs/reliability.md): nothing a user has is ever lost or damaged, and every expected failure is one line.

The rules (docs/reliability.md), each held by the tests below that name it:

- A diverged fine-tuning run is never saved: a non-finite step is skipped and counted, too many in a row stop
  the run with one line suggesting a lower learning rate, and only a finite evaluation of finite weights can
  become the best model.
- max_seq_length below what the task's template needs is refused when the run is configured, with the smallest
  length that works.
- A JSON label is a number, not a spelling: 1 and 1.0 are one class.
- Outputs never land on an input, a folder or a path under a file; missing parent folders are made; finetune
  replaces only an earlier fine-tuning output (its .electra marker), anything else needs --overwrite.
- A damaged fine-tuned folder is one line naming the file, for predict, evaluate and electra.load.
- A full disk at any write of finetune or predict is one line; no temporary file is left and the earlier
  output is unchanged and still predicts the same.

A tiny random ELECTRA and toy tasks (tests/toy_tasks.py): every fine-tuning run here takes a second or two.
"""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from faults import disk_fills_at
from safetensors.torch import load_file, save_file
from toy_tasks import FILLER, GOOD, save_toy_model, write_conll, write_squad, write_sst

import electra
from electra.cli import main
from electra.config import ModelConfig
from electra.data.readers import read_classification
from electra.errors import UserError
from electra.finetuning.finetune import FinetuneConfig, finetune
from electra.finetuning.predict import evaluate_cli, predict_cli
from electra.finetuning.tasks import ClassificationTask
from electra.runtime.metrics_log import read_metrics

QUICK = ["epochs=1", "batch_size=16", "eval_every=2", "learning_rate=3e-3", "layerwise_lr_decay=1.0"]
TEXTS = ["the film was great", "dull and boring", "a lovely story"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    return {"model": save_toy_model(d, ["what", "answer", "is", "?", "."], 96),
            "train": write_sst(d / "train.tsv", 48, 0), "dev": write_sst(d / "dev.tsv", 16, 1), "dir": d}


@pytest.fixture(scope="module")
def good(toy, tmp_path_factory):
    """A complete fine-tuning folder; tests copy it before they touch it."""
    out = tmp_path_factory.mktemp("good") / "ft"
    finetune(toy["model"], "classification", toy["train"], toy["dev"], out, overrides=QUICK, progress=False)
    return out


def run(toy, out, overrides=(), task="classification", train=None, dev=None, **kwargs):
    return finetune(toy["model"], task, train or toy["train"], dev or toy["dev"], out,
                    overrides=[*QUICK, *overrides], progress=False, **kwargs)


def litter(folder: Path) -> list[Path]:
    """Hidden files or folders under ``folder`` other than the toolkit's .electra marker: temporaries."""
    return [p for p in folder.rglob(".*") if p.name != ".electra"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def predictions(folder: Path) -> list:
    return electra.load(folder).predict(TEXTS)


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def write_regression(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.randint(0, 3)
        rows.append(f"{' '.join(rng.sample(FILLER, 4) + rng.sample(GOOD, k))}\t{k + 0.5}")
    path.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return path


# --------------------------------------------------------------------------- a diverged run is never saved


def test_a_diverged_regression_run_is_one_line_and_saves_no_model(toy, tmp_path, capsys):
    """Rule: a non-finite model is never saved. learning_rate=1e30 on a regression task used to leave no finite
    evaluation and end in a traceback (`Expected state_dict...`)."""
    train, dev = write_regression(tmp_path / "train.tsv", 48, 0), write_regression(tmp_path / "dev.tsv", 16, 1)
    out = tmp_path / "runs" / "sts"
    err = one_line_error(capsys, ["finetune", "--model", str(toy["model"]), "--task", "classification",
                                  "--train", str(train), "--dev", str(dev), "--out", str(out), "--quiet",
                                  *[a for kv in QUICK + ["learning_rate=1e30"] for a in ("--set", kv)]])
    assert "non-finite" in err and "learning_rate" in err and "no model was saved" in err, err
    assert not out.exists() and not (tmp_path / "runs").exists() and litter(tmp_path) == []


def test_a_diverged_classifier_is_never_saved_as_the_best_model(toy, tmp_path):
    """Rule: a non-finite model is never saved. A classifier whose weights are all NaN still scores (argmax of
    NaN logits is class 0): it used to be saved as the best model, exit 0."""
    out = tmp_path / "ft"
    with pytest.raises(UserError, match=r"learning_rate \(now 1e\+30; try --set learning_rate=0\.0003\)"):
        run(toy, out, ["learning_rate=1e30", "epochs=3"])
    assert not out.exists() and litter(tmp_path) == []


def test_a_few_non_finite_steps_are_skipped_and_counted(toy, tmp_path, monkeypatch, capsys):
    """Rule: a non-finite step is skipped (the weights stay finite), counted in metrics.jsonl and reported."""
    loss, calls = ClassificationTask.loss, []

    def sometimes_nan(self, logits, batch):
        calls.append(1)
        value = loss(self, logits, batch)
        return value * float("nan") if len(calls) == 2 else value

    monkeypatch.setattr(ClassificationTask, "loss", sometimes_nan)
    out = tmp_path / "ft"
    run(toy, out, ["epochs=2", "log_every=1"])
    assert "warning: seed 1: 1 steps had a non-finite loss or gradients and were skipped" in capsys.readouterr().err
    records = [r for r in read_metrics(out / "seed-1" / "metrics.jsonl") if "loss" in r]
    assert [r["skipped_steps"] for r in records] == [0] + [1] * (len(records) - 1)
    weights = load_file(str(out / "model" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_non_finite_steps_in_a_row_stop_the_run_after_max_skipped_steps(toy, tmp_path, monkeypatch):
    """Rule: after max_skipped_steps non-finite steps in a row the run stops with one line and saves nothing."""
    loss, calls = ClassificationTask.loss, []

    def nan_after_the_first(self, logits, batch):
        calls.append(1)
        value = loss(self, logits, batch)
        return value if len(calls) == 1 else value * float("nan")

    monkeypatch.setattr(ClassificationTask, "loss", nan_after_the_first)
    out = tmp_path / "ft"
    with pytest.raises(UserError, match=r"^seed 1: the last 3 steps \(to step 4\) had a non-finite loss"):
        run(toy, out, ["epochs=5", "max_skipped_steps=3"])
    assert len(calls) == 4 and not out.exists()
    with pytest.raises(UserError, match="max_skipped_steps must be >= 1"):
        FinetuneConfig(max_skipped_steps=0).validate()


# --------------------------------------------------------------------------- max_seq_length


def write_pairs(path: Path) -> Path:
    rng = random.Random(4)
    rows = [f"{' '.join(rng.sample(FILLER, 3))}\t{' '.join(rng.sample(GOOD, 2))}\t{i % 2}" for i in range(20)]
    path.write_text("sentence1\tsentence2\tlabel\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("task, files, settings, need", [
    ("classification", None, ["max_seq_length=2"], 3),
    ("classification", "pairs", ["max_seq_length=4"], 5),
    ("tagging", "conll", ["max_seq_length=1"], 3),
    ("qa", "squad", ["max_seq_length=67"], 68),  # max_query_length 64 + [CLS] [SEP] [SEP] + 1 context token
    ("qa", "squad", ["max_seq_length=20", "max_query_length=17"], 21),
])
def test_max_seq_length_below_the_special_tokens_is_refused_with_the_least_that_works(toy, tmp_path, task, files,
                                                                                      settings, need):
    """Rule: a max_seq_length smaller than the task's template needs (where tokenizers silently stops
    truncating, or the model sees only [CLS] [SEP]) is refused with the smallest length that works."""
    train = {"pairs": lambda: write_pairs(tmp_path / "pairs.tsv"),
             "conll": lambda: write_conll(tmp_path / "t.conll", 8, 0),
             "squad": lambda: write_squad(tmp_path / "q.json", 4, 0), None: lambda: toy["train"]}[files]()
    out = tmp_path / "out"
    with pytest.raises(UserError, match=rf"max_seq_length .*give --set max_seq_length={need} or more$"):
        run(toy, out, settings, task=task, train=train, dev=train)
    assert not out.exists()


def test_max_seq_length_is_checked_before_any_file_is_read(toy, tmp_path):
    """Rule: the length is refused at configuration time (the missing data files are never looked at)."""
    with pytest.raises(UserError, match="max_seq_length 2 is too small for classification"):
        run(toy, tmp_path / "out", ["max_seq_length=2"], train=tmp_path / "missing.tsv", dev=tmp_path / "missing.tsv")
    with pytest.raises(UserError, match="max_seq_length=3 or more"):
        FinetuneConfig(max_seq_length=2).resolve(ModelConfig(hidden_size=64, num_attention_heads=2), "tagging")


def test_the_least_max_seq_length_works(toy, tmp_path):
    """The minimum itself is accepted: text pairs at 5 are [CLS] a [SEP] b [SEP]."""
    pairs = write_pairs(tmp_path / "pairs.tsv")
    results = run(toy, tmp_path / "out", ["max_seq_length=5"], train=pairs, dev=pairs)
    assert results["seeds"][0]["accuracy"] >= 0


# --------------------------------------------------------------------------- labels


def test_jsonl_labels_1_and_1_0_are_one_class(tmp_path):
    """Rule: a JSON label is a number, not a spelling: 1, 1.0 and 1e0 are the class "1"."""
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 1.0}\n{"text": "c", "label": 0}\n'
                    '{"text": "d", "label": 0.0}\n{"text": "e", "label": 1e0}\n{"text": "f", "label": "0"}\n')
    examples, info = read_classification(path)
    assert info["labels"] == ["0", "1"] and not info["is_regression"]
    assert [e.label for e in examples] == ["1", "1", "0", "0", "1", "0"]
    path.write_text('{"text": "a", "label": 0.5}\n{"text": "b", "label": 2}\n')  # still a regression
    assert read_classification(path)[1]["is_regression"]
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": NaN}\n')
    with pytest.raises(UserError, match=r"train.jsonl:2: label nan is not a finite number"):
        read_classification(path)


# --------------------------------------------------------------------------- outputs


def test_predict_on_a_full_disk_leaves_no_temporary_file_and_the_old_output(good, toy, tmp_path, monkeypatch):
    """Rule: a writer completes or leaves its destination as it was, with no temporary file (predict used to
    leave .p.jsonl.tmp); the same for evaluate."""
    texts = tmp_path / "in.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    out, new = tmp_path / "p.jsonl", tmp_path / "q.jsonl"
    out.write_text("the old predictions\n")
    counted = disk_fills_at(monkeypatch, None)
    predict_cli(good, texts, new, progress=False)
    assert counted.writes >= 1
    new.unlink()
    for n in sorted({1, counted.writes, random.Random(32).randint(1, counted.writes)}):
        with monkeypatch.context() as m:
            disk_fills_at(m, n)
            for target in (out, new):
                with pytest.raises(UserError, match="disk is full"):
                    predict_cli(good, texts, target, progress=False)
        assert out.read_text() == "the old predictions\n" and not new.exists() and litter(tmp_path) == []
    scores = tmp_path / "scores.json"
    scores.write_text("{}")
    with monkeypatch.context() as m:
        disk_fills_at(m, 1)
        with pytest.raises(UserError, match="disk is full"):
            evaluate_cli(good, toy["dev"], scores)
    assert scores.read_text() == "{}" and litter(tmp_path) == []


def test_predict_out_is_a_file_path_and_its_folders_are_made(good, tmp_path, capsys):
    """Rule: --out that is a folder or lies under a file is one line; missing parent folders are made."""
    texts = tmp_path / "in.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    base = ["predict", "--model", str(good), "--input", str(texts), "--quiet", "--out"]
    assert "is a folder" in one_line_error(capsys, [*base, str(tmp_path / "folder")])
    assert "which is a file" in one_line_error(capsys, [*base, str(tmp_path / "afile" / "p.jsonl")])
    assert (tmp_path / "afile").read_text() == "x"
    err = one_line_error(capsys, ["evaluate", "--model", str(good), "--data", str(texts), "--out",
                                  str(tmp_path / "folder")])
    assert "is a folder" in err
    assert main([*base, str(tmp_path / "new" / "sub" / "p.jsonl")]) == 0
    assert len((tmp_path / "new" / "sub" / "p.jsonl").read_text().splitlines()) == 3


def test_predict_and_evaluate_never_write_over_their_inputs(good, toy, tmp_path, capsys):
    """Rule: an output is never written over one of the command's inputs (the data or the model's files)."""
    data = tmp_path / "mydev.tsv"
    shutil.copy(toy["dev"], data)
    before = data.read_bytes()
    task_json = (good / "model" / "task.json").read_bytes()
    for argv in (["predict", "--model", str(good), "--input", str(data), "--out", str(data), "--quiet"],
                 ["evaluate", "--model", str(good), "--data", str(data), "--out", str(data)],
                 ["predict", "--model", str(good), "--input", str(data), "--out", str(good / "model" / "task.json")],
                 ["evaluate", "--model", str(good), "--data", str(data), "--out", str(good / "results.json")]):
        assert "is also an input of this command" in one_line_error(capsys, argv)
    assert data.read_bytes() == before and (good / "model" / "task.json").read_bytes() == task_json
    assert main(["evaluate", "--model", str(good), "--data", str(data)]) == 0  # the default: beside the model
    assert (good / "eval-mydev.json").is_file()
    assert main(["evaluate", "--model", str(good), "--data", str(data)]) == 0  # and again
    (good / "eval-mydev.json").unlink()


def test_finetune_refuses_a_file_someone_elses_folder_or_one_holding_its_inputs(toy, tmp_path, capsys):
    """Rule: finetune replaces only what it wrote; --out that is a file, under a file, someone else's non-empty
    folder or a folder holding an input is one line and nothing changes."""
    afile, theirs = tmp_path / "afile", tmp_path / "theirs"
    afile.write_text("mine")
    theirs.mkdir()
    (theirs / "notes.md").write_text("mine")
    data = tmp_path / "data"
    data.mkdir()
    train = data / "train.tsv"
    shutil.copy(toy["train"], train)
    base = ["finetune", "--model", str(toy["model"]), "--task", "classification", "--dev", str(toy["dev"]),
            "--quiet", *[a for kv in QUICK for a in ("--set", kv)]]
    assert "is a file" in one_line_error(capsys, [*base, "--train", str(train), "--out", str(afile)])
    assert "which is a file" in one_line_error(capsys, [*base, "--train", str(train), "--out", str(afile / "x")])
    err = one_line_error(capsys, [*base, "--train", str(train), "--out", str(theirs)])
    assert "already exists" in err and "--overwrite" in err
    assert "an input of this command" in one_line_error(capsys, [*base, "--train", str(train), "--out", str(data)])
    assert "an input of this command" in one_line_error(
        capsys, [*base, "--train", str(train), "--out", str(toy["model"])])
    assert afile.read_text() == "mine" and snapshot(theirs) == {"notes.md": b"mine"} and sorted(
        p.name for p in data.iterdir()) == ["train.tsv"]
    # A folder with the marker but not a fine-tuning run's (a pre-training run, say) is not finetune's either.
    (theirs / ".electra").write_text("written by `electra pretrain`\n")
    assert "already exists" in one_line_error(capsys, [*base, "--train", str(train), "--out", str(theirs)])
    # --overwrite (the Python API's overwrite=True) replaces it whole.
    run(toy, theirs, overwrite=True)
    assert not (theirs / "notes.md").exists() and (theirs / "model" / "task.json").is_file()


def test_finetune_replaces_its_own_earlier_output_only_when_complete(good, toy, tmp_path, capsys):
    """Rule: a fine-tuning folder carries the .electra marker, so a re-run with the same --out replaces it (it
    used to be refused), and only once the new run is complete."""
    out = tmp_path / "ft"
    shutil.copytree(good, out)
    assert (out / ".electra").is_file() and litter(out) == []
    stale = out / "seed-7"
    stale.mkdir()  # from an earlier run with other seeds: gone after the replacement
    capsys.readouterr()
    results = run(toy, out, ["seed=2"])
    assert "holds an earlier fine-tuning run" in capsys.readouterr().out
    assert results == json.loads((out / "results.json").read_text()) and results["model"] == "seed-2/best"
    assert sorted(p.name for p in out.iterdir()) == [".electra", "finetune.json", "model", "results.json", "seed-2"]
    assert litter(tmp_path) == []


# --------------------------------------------------------------------------- damaged fine-tuned folders


def _nan_weights(path: Path) -> None:
    save_file({k: torch.full_like(v, float("nan")) for k, v in load_file(str(path)).items()}, str(path))


def _task(**change):
    def edit(path: Path) -> None:
        meta = json.loads(path.read_text())
        meta.update(change)
        path.write_text(json.dumps(meta))
    return edit


DAMAGE = {
    "truncated weights": ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])),
    "garbage weights": ("model.safetensors", lambda p: p.write_bytes(b"\x07" * 64)),
    "no weights": ("model.safetensors", lambda p: p.unlink()),
    "NaN weights": ("model.safetensors", _nan_weights),
    "task.json not an object": ("task.json", lambda p: p.write_text("[1, 2]")),
    "task.json not JSON": ("task.json", lambda p: p.write_text('{"task": ')),
    "task.json missing keys": ("task.json", lambda p: p.write_text('{"task": "classification"}')),
    "task.json unknown task": ("task.json", _task(task="summarise")),
    "task.json three labels for two": ("task.json", _task(labels=["0", "1", "2"])),
    "task.json labels not a list": ("task.json", _task(labels="0 1")),
    "task.json a tagger's": ("task.json", _task(task="tagging")),
    "task.json max_seq_length 1": ("task.json", _task(max_seq_length=1)),
    "task.json max_seq_length a string": ("task.json", _task(max_seq_length="128")),
    "config.json not an object": ("config.json", lambda p: p.write_text("3")),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_fine_tuned_folder_is_one_line_naming_the_file(good, toy, tmp_path, damage):
    """Rule: a fine-tuned folder with a corrupt model.safetensors, or a task.json or config.json that is not an
    object or does not match the weights, is one line naming the file for predict, evaluate and electra.load."""
    folder = tmp_path / "m"
    shutil.copytree(good / "model", folder)
    name, edit = DAMAGE[damage]
    edit(folder / name)
    texts = tmp_path / "in.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    for call in (lambda: predict_cli(folder, texts, tmp_path / "p.jsonl", progress=False),
                 lambda: evaluate_cli(folder, toy["dev"], tmp_path / "e.json"),
                 lambda: electra.load(folder)):
        with pytest.raises(UserError) as e:
            call()
        message = str(e.value)
        assert str(folder / name) in message and "\n" not in message, message
    assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "e.json").exists()


# --------------------------------------------------------------------------- a full disk


def test_finetune_on_a_full_disk_keeps_the_earlier_run_and_leaves_no_temporary_file(good, toy, tmp_path,
                                                                                  monkeypatch):
    """Rule: the disk filling at any write of finetune (N drawn at random among the writes a run makes) is one
    line naming the full disk; no temporary file is left; an earlier fine-tuning --out it was replacing is
    unchanged and predicts the same; a new --out is not left behind."""
    runs = tmp_path / "runs"
    out, fresh = runs / "ft", runs / "new" / "ft"
    shutil.copytree(good, out)
    kept, expected = snapshot(out), predictions(out)
    with monkeypatch.context() as m:
        counted = disk_fills_at(m, None)
        run(toy, runs / "count")
    writes = counted.writes
    assert writes > 10  # marker, finetune.json, metrics records, the best model, model/, results.json
    rng = random.Random(32)
    draws = sorted({1, writes, *rng.sample(range(2, writes), 3)})
    for n in draws:
        for target in (out, fresh):
            with monkeypatch.context() as m:
                disk = disk_fills_at(m, n)
                with pytest.raises(UserError, match="the disk is full") as e:
                    run(toy, target)
            assert disk.failed >= 1 and "\n" not in str(e.value) and str(target) in str(e.value), (n, str(e.value))
            assert litter(runs) == [], (n, litter(runs))
        assert snapshot(out) == kept, n
        assert not (runs / "new").exists(), n
    assert predictions(out) == expected
