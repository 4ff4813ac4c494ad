"""Nothing a user has is lost or damaged: pre-training runs, resume and export (docs/reliability.md).

Each test names the rule it holds. The command line is driven in-process through ``electra.cli.main``: an
uncaught exception (a traceback) fails the test; a user mistake must return 2 with one line on stderr.
"""

import json
import random
import shutil

import pytest
import torch
from faults import disk_fills_at, mounted_tmpfs
from synthetic import SMALL_RUN, make_data_dir

from electra.cli import main
from electra.pretraining.export import export_run
from electra.pretraining.pretrain import pretrain
from electra.runtime.checkpoint import checkpoint_dirs

SMALL = [*SMALL_RUN, "train.eval_every=3", "train.save_every=3", "train.keep_checkpoints=5"]


@pytest.fixture(scope="module")
def run6(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    data = make_data_dir(root / "data")
    return data, pretrain(data, root / "run", preset="tiny", max_steps=6, overrides=SMALL, progress=False)


@pytest.fixture
def run(run6, tmp_path):
    """A private copy of the 6-step run, to damage."""
    data, original = run6
    shutil.copytree(original, tmp_path / "run")
    return data, tmp_path / "run"


def cli(capsys, *args):
    """Run the command in-process; returns (exit status, stderr lines)."""
    capsys.readouterr()
    code = main([*map(str, args), "--quiet"])
    return code, capsys.readouterr().err.strip().splitlines()


def one_line_error(code, err, *needles):
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("electra: error: "), err
    for needle in needles:
        assert needle in err[0], err[0]


def snapshot(folder):
    """Every file under ``folder`` (hidden ones included) and its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden_litter(folder):
    """Temporary files or folders a writer left (the owner marker is not litter)."""
    return [p for p in folder.rglob(".*") if p.name != ".electra"]


# --- rule: nothing in a run folder changes until the run has been validated against it


def test_refused_resume_leaves_the_run_as_it_was(run, capsys):
    data, r = run
    before = snapshot(r)
    code, err = cli(capsys, "pretrain", "--data", data, "--out", r, "--resume", "--set", "model.num_hidden_layers=1")
    one_line_error(code, err, "model.num_hidden_layers=1", "model.num_hidden_layers=2", "config.json")
    assert snapshot(r) == before
    # The run still resumes and exports as it did.
    assert cli(capsys, "pretrain", "--data", data, "--out", r, "--resume", "--max-steps", "7")[0] == 0
    assert cli(capsys, "export", r, "--out", r / "hf")[0] == 0


def test_a_checkpoint_of_another_shape_is_one_line(run, capsys):
    """config.json edited by hand to another architecture: the load names the weights file, no TypeError."""
    data, r = run
    cfg = json.loads((r / "config.json").read_text())
    cfg["model"]["num_hidden_layers"] = 1
    (r / "config.json").write_text(json.dumps(cfg))
    one_line_error(*cli(capsys, "pretrain", "--data", data, "--out", r, "--resume"), "model.safetensors",
                   "do not match")


def test_resume_may_change_the_schedule(run, capsys):
    data, r = run
    code, err = cli(capsys, "pretrain", "--data", data, "--out", r, "--resume", "--max-steps", "8",
                    "--set", "train.log_every=2")
    assert code == 0, err
    assert json.loads((r / "config.json").read_text())["train"]["log_every"] == 2


# --- rule: a run killed mid-write leaves a torn last line in metrics.jsonl; every reader survives it


def test_a_torn_metrics_line_blocks_neither_resume_nor_export(run, capsys):
    data, r = run
    from electra.runtime.metrics_log import read_metrics

    with open(r / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "gen_lo')
    records = read_metrics(r / "metrics.jsonl", report=None)
    assert records and all(isinstance(x, dict) for x in records)
    code, err = cli(capsys, "export", r, "--out", r / "hf")
    assert code == 0, err
    assert any("torn last line" in line for line in err)
    for kind in ("discriminator", "generator"):
        assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in (r / "hf" / kind).iterdir()}
    code, err = cli(capsys, "pretrain", "--data", data, "--out", r, "--resume", "--max-steps", "7")
    assert code == 0, err
    lines = (r / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # the torn line was dropped, the new records appended
    assert max(json.loads(line).get("step", 0) for line in lines) == 7


def test_read_metrics_reports_the_torn_line(tmp_path):
    from electra.runtime.metrics_log import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n[1, 2]\n{"step": 2}\n{"step": 3, "gen')
    reports = []
    assert read_metrics(path, reports.append) == [{"step": 1}, {"step": 2}]
    assert reports == [f"warning: {path}:2: skipped not a JSON record",
                       f"warning: {path}:4: skipped a torn last line (the run was stopped while writing it)"]


# --- rule: the toolkit replaces only what it wrote itself


def test_export_never_replaces_a_users_folder(run, capsys):
    data, r = run
    mine = r.parent / "models" / "discriminator"
    mine.mkdir(parents=True)
    (mine / "NOTES.md").write_text("my notes")
    (mine / "config.json").write_text(json.dumps({"model_type": "electra"}))  # looks like an export; is not one
    torch.save({"w": torch.ones(1)}, mine / "pytorch_model.bin")
    before = snapshot(mine.parent)
    one_line_error(*cli(capsys, "export", r, "--out", mine.parent), "discriminator", "--overwrite")
    assert snapshot(mine.parent) == before
    assert cli(capsys, "export", r, "--out", mine.parent, "--overwrite")[0] == 0
    assert not (mine / "NOTES.md").exists() and (mine / ".electra").is_file()
    assert cli(capsys, "export", r, "--out", mine.parent)[0] == 0  # its own export: replaced without asking


def test_a_new_run_refuses_a_file_as_its_folder(run, capsys):
    data, r = run
    (r.parent / "afile").write_text("x")
    one_line_error(*cli(capsys, "pretrain", "--preset", "tiny", "--data", data, "--out", r.parent / "afile"),
                   "is a file")
    one_line_error(*cli(capsys, "pretrain", "--preset", "tiny", "--data", data, "--out", r.parent / "afile" / "x"),
                   "which is a file")
    assert (r.parent / "afile").read_text() == "x"


# --- rule: every writer completes or leaves the destination as it was, with no temporary file


def count_writes(monkeypatch, fn):
    disk = disk_fills_at(monkeypatch, None)
    fn()
    monkeypatch.undo()
    return disk.writes


@pytest.mark.parametrize("draw", range(3))
def test_disk_full_during_a_new_run_leaves_nothing(run6, tmp_path, monkeypatch, capsys, draw):
    data, _ = run6
    args = ["pretrain", "--preset", "tiny", "--data", data, "--max-steps", "3", *sum([["--set", s] for s in SMALL], [])]
    total = count_writes(monkeypatch, lambda: main([*map(str, args), "--out", str(tmp_path / "probe"), "--quiet"]))
    n = random.Random(f"new-run-{draw}").randint(1, total)
    disk_fills_at(monkeypatch, n)
    code, err = cli(capsys, *args, "--out", tmp_path / "r")
    monkeypatch.undo()
    one_line_error(code, err, "disk is full")
    assert not hidden_litter(tmp_path)
    r = tmp_path / "r"
    if r.exists():  # the folder was made whole; the run stopped at a checkpoint or a log record
        assert cli(capsys, "pretrain", "--data", data, "--out", r, "--resume")[0] == 0
        assert cli(capsys, "export", r, "--out", r / "hf")[0] == 0
    # Nothing that would refuse the next attempt: the same command succeeds once the disk has room.
    shutil.rmtree(r, ignore_errors=True)
    assert cli(capsys, *args, "--out", r)[0] == 0


@pytest.mark.parametrize("draw", range(3))
def test_disk_full_during_a_resume_keeps_the_run_resumable(run, monkeypatch, capsys, draw):
    data, r = run
    probe = r.parent / "probe"
    shutil.copytree(r, probe)
    args = ["pretrain", "--data", data, "--resume", "--max-steps", "9"]
    total = count_writes(monkeypatch, lambda: main([*map(str, args), "--out", str(probe), "--quiet"]))
    disk_fills_at(monkeypatch, random.Random(f"resume-{draw}").randint(1, total))
    code, err = cli(capsys, *args, "--out", r)
    monkeypatch.undo()
    one_line_error(code, err, "disk is full")
    assert not hidden_litter(r)
    assert cli(capsys, *args, "--out", r)[0] == 0
    assert max(int(c.name.split("-")[1]) for c in checkpoint_dirs(r)) == 9


@pytest.mark.parametrize("draw", range(3))
def test_disk_full_during_export_keeps_the_earlier_export(run, monkeypatch, capsys, draw):
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    data, r = run
    assert cli(capsys, "export", r, "--out", r / "hf", "--step", "3")[0] == 0
    before = snapshot(r / "hf")
    total = count_writes(monkeypatch, lambda: export_run(r, r.parent / "probe"))
    disk_fills_at(monkeypatch, random.Random(f"export-{draw}").randint(1, total))
    code, err = cli(capsys, "export", r, "--out", r / "hf")
    monkeypatch.undo()
    one_line_error(code, err, "disk is full")
    assert snapshot(r / "hf") == before  # the step-3 export, whole
    assert not hidden_litter(r / "hf")
    ElectraForPreTraining.from_pretrained(r / "hf" / "discriminator")
    ElectraForMaskedLM.from_pretrained(r / "hf" / "generator")


def test_a_full_disk_while_appending_metrics_is_one_line(run, monkeypatch, capsys):
    data, r = run
    from electra.runtime import metrics_log

    class Full:
        def write(self, _):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(metrics_log, "open_for_appending", lambda path: Full())
    one_line_error(*cli(capsys, "pretrain", "--data", data, "--out", r, "--resume", "--max-steps", "8"),
                   "metrics.jsonl", "continue with --resume")


# --- rule: every damaged file is one line naming it; nothing outside the run is ever read as its checkpoint


@pytest.mark.parametrize("name,content", [
    ("optimizer.pt", b"not a torch file"),
    ("optimizer.pt", "pickle"),
    ("optimizer.pt", "list"),
    ("rng.pt", b"\x80\x04garbage"),
    ("rng.pt", "list"),
    ("state.json", b"[1, 2]"),
])
def test_a_damaged_checkpoint_file_is_one_line(run, capsys, name, content):
    data, r = run
    ckpt = checkpoint_dirs(r)[-1]
    (ckpt / "manifest.json").unlink()  # a checkpoint from before manifests: its files are trusted as they are
    if content == "pickle":
        torch.save({"x": shutil.rmtree}, ckpt / name)  # a payload weights_only must refuse
    elif content == "list":
        torch.save([1, 2, 3], ckpt / name)
    else:
        (ckpt / name).write_bytes(content)
    one_line_error(*cli(capsys, "pretrain", "--data", data, "--out", r, "--resume"), name)


def test_best_json_cannot_point_outside_the_run(run, tmp_path, capsys):
    data, r = run
    other = tmp_path / "other"
    shutil.copytree(r, other)
    (r / "checkpoints" / "best.json").write_text(json.dumps(
        {"checkpoint": "../../other/checkpoints/step-00000006", "step": 6, "loss": 0.1}))
    code, err = cli(capsys, "export", r, "--out", tmp_path / "hf", "--best")
    assert code == 2 and "not one of this run's checkpoints" in err[0] and "no best held-out checkpoint" in err[-1]
    assert not (tmp_path / "hf").exists()


def test_inspect_a_checkpoint_without_manifest_or_with_damaged_weights(run, capsys):
    data, r = run
    for c in checkpoint_dirs(r):
        (c / "manifest.json").unlink()
    from electra.pretraining.inspect_tokens import load_discriminator

    model, _ = load_discriminator(r)  # (the synthetic data has no tokenizer to inspect text with)
    assert model.config.num_hidden_layers == 2
    (checkpoint_dirs(r)[-1] / "model.safetensors").write_bytes(b"\x00" * 40)
    one_line_error(*cli(capsys, "inspect", "--model", r, "the cat"), "model.safetensors")
    one_line_error(*cli(capsys, "inspect", "--model", checkpoint_dirs(r)[0], "the cat"), "config.json")


@pytest.mark.parametrize("damage,needle", [
    (lambda d: (d / "config.json").write_text("[1, 2]"), "JSON object"),
    (lambda d: (d / "config.json").write_text('"electra"'), "JSON object"),
    (lambda d: ((d / "model.safetensors").unlink(), torch.save({"w": shutil.rmtree}, d / "pytorch_model.bin")),
     "pytorch_model.bin"),
    (lambda d: ((d / "model.safetensors").unlink(), torch.save([torch.ones(2)], d / "pytorch_model.bin")),
     "not a state dict"),
    (lambda d: (d / "model.safetensors").write_bytes(b"{}" * 10), "model.safetensors"),
])
def test_a_damaged_init_folder_is_one_line(run, capsys, damage, needle):
    data, r = run
    assert cli(capsys, "export", r, "--out", r.parent / "hf")[0] == 0
    damage(r.parent / "hf" / "discriminator")
    one_line_error(*cli(capsys, "pretrain", "--preset", "tiny", "--data", data, "--out", r.parent / "new",
                        "--init", r.parent / "hf"), needle)
    assert not (r.parent / "new").exists()


def test_an_init_pair_whose_config_is_not_an_object_is_one_line(run, capsys):
    data, r = run
    assert cli(capsys, "export", r, "--out", r.parent / "hf")[0] == 0
    (r.parent / "hf" / "generator" / "config.json").write_text("[1, 2]")
    one_line_error(*cli(capsys, "pretrain", "--preset", "tiny", "--data", data, "--out", r.parent / "new", "--init",
                        r.parent / "hf" / "discriminator", r.parent / "hf" / "generator"), "JSON object")
    assert not (r.parent / "new").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB file system, for what no patched writer can show: the libraries' own writes filling it."""
    with mounted_tmpfs(tmp_path / "small", "size=256k") as folder:
        yield folder


def test_a_real_full_disk_stops_a_run_with_one_line(run6, small_disk, capsys):
    data, original = run6
    code, err = cli(capsys, "pretrain", "--preset", "tiny", "--data", data, "--out", small_disk / "r",
                    "--max-steps", "6", *sum([["--set", s] for s in SMALL], []))
    one_line_error(code, err, "disk is full")
    assert not hidden_litter(small_disk)
    code, err = cli(capsys, "export", original, "--out", small_disk / "hf")
    one_line_error(code, err, "disk is full")
    assert not hidden_litter(small_disk) and not (small_disk / "hf" / "discriminator").exists()
