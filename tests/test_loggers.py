"""TensorBoard and W&B: the scalars of metrics.jsonl, at their steps, once each, also after a
stop and a resume; rank 0 only; a missing package is a one-line error."""

import json
import sys
import types

import pytest
from synthetic import SMALL_RUN, make_data_dir

from electra.errors import UserError
from electra.pretraining.pretrain import pretrain
from electra.runtime.loggers import scalars


def jsonl_scalars(path):
    """{tag: [(step, value)]} from metrics.jsonl, by the same naming as the sinks."""
    out = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for tag, value in scalars(record).items():
            out.setdefault(tag, []).append((record["step"], value))
    return out


def tensorboard_scalars(folder):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = accumulator.EventAccumulator(str(folder), size_guidance={accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_same(expected, got):
    assert sorted(got) == sorted(expected)
    for tag, points in expected.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag  # every step once, in order
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6, abs=1e-6), tag


def test_scalars_names_train_and_eval_numbers_and_skips_the_rest():
    assert scalars({"step": 3, "gen_loss": 2.5, "lr": 1e-3, "note": "x", "flag": True}) == \
        {"train/gen_loss": 2.5, "train/lr": 1e-3}
    assert scalars({"step": 5, "event": "eval", "eval_disc_auc": 0.7}) == {"eval/disc_auc": 0.7}
    assert scalars({"step": 0, "event": "start", "max_steps": 10}) == {}
    assert scalars({"step": 1, "gen_loss": float("nan")}) == {}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("d") / "data")


def crash_after_step_3(data, run, overrides):
    """A run of 8 steps that 'crashed' after logging all of them but saving only step 3: its later checkpoints
    are deleted, so the resume redoes steps 4-8, which the sinks have already logged once."""
    import shutil
    pretrain(data, run, preset="tiny", max_steps=8, progress=False,
             overrides=SMALL_RUN + overrides + ["train.save_every=3", "train.keep_checkpoints=5"])
    for ckpt in (run / "checkpoints").iterdir():
        if ckpt.name.startswith("step-") and ckpt.name != "step-00000003":
            shutil.rmtree(ckpt)
    pretrain(data, run, resume=True, progress=False)


def test_tensorboard_holds_the_metrics_after_a_crash_and_a_resume(data, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    crash_after_step_3(data, run, ["log.tensorboard=true"])
    expected = jsonl_scalars(run / "metrics.jsonl")
    assert [s for s, _ in expected["train/gen_loss"]] == list(range(1, 9))
    assert "eval/disc_auc" in expected and "eval/unigram_auc" in expected
    assert_same(expected, tensorboard_scalars(run / "tensorboard"))


def test_fine_tuning_logs_to_tensorboard_too(tmp_path):
    pytest.importorskip("tensorboard")
    from toy_tasks import save_toy_model, write_sst

    from electra.finetuning.finetune import finetune
    (tmp_path / "m").mkdir()
    model = save_toy_model(tmp_path / "m", [], 64)
    train, dev = write_sst(tmp_path / "train.tsv", 64, 0), write_sst(tmp_path / "dev.tsv", 20, 1)
    finetune(model, "classification", train, dev, tmp_path / "ft", overrides=[
        "epochs=1", "batch_size=16", "eval_every=2", "log_every=1", "log.tensorboard=true"], progress=False)
    seed = tmp_path / "ft" / "seed-1"
    expected = jsonl_scalars(seed / "metrics.jsonl")
    assert "eval/accuracy" in expected and "train/loss" in expected
    assert_same(expected, tensorboard_scalars(seed / "tensorboard"))
    assert json.loads((tmp_path / "ft" / "finetune.json").read_text())["log"]["tensorboard"] is True


class FakeWandb(types.ModuleType):
    """Stands in for the wandb package: records init arguments and logged steps."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.logged, self.finished = [], [], 0
        self.util = types.SimpleNamespace(generate_id=lambda: "abc123")

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return self

    def log(self, values, step):
        self.logged.append((step, values))

    def finish(self):
        self.finished += 1


def test_wandb_resumes_the_same_run_offline(data, tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run = tmp_path / "run"
    crash_after_step_3(data, run, ["log.wandb=true"])
    assert [i["id"] for i in fake.inits] == ["abc123", "abc123"] and fake.finished == 2
    assert all(i["mode"] == "offline" and i["resume"] == "allow" and i["project"] == "electra" for i in fake.inits)
    assert fake.inits[0]["config"]["train"]["max_steps"] == 8
    steps = [s for s, values in fake.logged if "train/gen_loss" in values]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8, 4, 5, 6, 7, 8]  # the same run, its redone steps sent again


def test_a_missing_logger_package_is_one_clear_error(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(UserError, match=r"log.tensorboard=true needs the tensorboard package: pip install"):
        pretrain(data, tmp_path / "a", preset="tiny", max_steps=2, overrides=SMALL_RUN + ["log.tensorboard=true"],
                 progress=False)
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(UserError, match=r"log.wandb=true needs the wandb package: pip install wandb"):
        pretrain(data, tmp_path / "b", preset="tiny", max_steps=2, overrides=SMALL_RUN + ["log.wandb=true"],
                 progress=False)
