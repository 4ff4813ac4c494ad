"""Checkpoint manifests: a damaged newest checkpoint is detected, reported, and the previous one used."""

import json
import shutil

import pytest
from synthetic import make_data_dir

from electra.cli import main
from electra.pretraining.pretrain import pretrain
from electra.runtime.checkpoint import checkpoint_dirs, checkpoint_problem, latest_good_checkpoint

SMALL = ["model.hidden_size=32", "model.embedding_size=24", "model.num_hidden_layers=2", "model.intermediate_size=64",
         "train.batch_size=8", "train.log_every=1", "train.eval_every=100", "train.save_every=3",
         "train.keep_checkpoints=5", "generator.hidden_fraction=0.5"]


def _losses(run):
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["gen_loss"], r["disc_loss"]) for r in recs if "gen_loss" in r}


@pytest.fixture(scope="module")
def run9(tmp_path_factory):
    root = tmp_path_factory.mktemp("ck")
    data = make_data_dir(root / "data")
    return data, pretrain(data, root / "run", preset="tiny", max_steps=9, overrides=SMALL, progress=False)


def test_every_checkpoint_carries_a_manifest_that_verifies(run9):
    _, run = run9
    ckpts = checkpoint_dirs(run)
    assert [c.name for c in ckpts] == ["step-00000003", "step-00000006", "step-00000009"]
    for c in ckpts:
        manifest = json.loads((c / "manifest.json").read_text())
        assert set(manifest) == {"model.safetensors", "optimizer.pt", "rng.pt", "state.json"}
        assert checkpoint_problem(c) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(run9, tmp_path, damage, capsys):
    data, original = run9
    run = tmp_path / "run"
    shutil.copytree(original, run)
    newest = checkpoint_dirs(run)[-1] / "model.safetensors"
    if damage == "truncate":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    elif damage == "flip":
        raw = bytearray(newest.read_bytes())
        raw[-10] ^= 0xFF
        newest.write_bytes(bytes(raw))
    else:
        newest.unlink()
    messages = []
    assert latest_good_checkpoint(run, messages.append).name == "step-00000006"
    assert len(messages) == 1 and "step-00000009" in messages[0] and "using the previous checkpoint" in messages[0]

    # --resume continues from step 6 and redoes 7-9 exactly as the uninterrupted run did
    assert main(["pretrain", "--data", str(data), "--out", str(run), "--resume", "--quiet"]) == 0
    assert "step-00000009: " in capsys.readouterr().err
    a, b = _losses(original), _losses(run)
    for step in (7, 8, 9):
        assert abs(a[step][0] - b[step][0]) <= 1e-5 and abs(a[step][1] - b[step][1]) <= 1e-5
    assert checkpoint_problem(checkpoint_dirs(run)[-1]) is None  # the damaged one was replaced by a good one


def test_all_checkpoints_damaged_is_a_clear_error(run9, tmp_path, capsys):
    data, original = run9
    run = tmp_path / "run"
    shutil.copytree(original, run)
    for c in checkpoint_dirs(run):
        (c / "optimizer.pt").write_bytes(b"garbage")
    assert main(["pretrain", "--data", str(data), "--out", str(run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("electra: error:") and "every checkpoint is damaged" in err[-1]
    assert len(checkpoint_dirs(run)) == 3  # nothing deleted


def test_full_disk_while_saving_keeps_the_previous_checkpoint(run9, tmp_path, monkeypatch):
    import electra.runtime.checkpoint as ck
    from electra.errors import UserError

    data, original = run9
    run = tmp_path / "run"
    shutil.copytree(original, run)
    before = {c.name: (c / "model.safetensors").read_bytes() for c in checkpoint_dirs(run)}

    from faults import disk_fills_at

    real_save = ck.save_checkpoint

    def save_on_a_full_disk(*args, **kwargs):  # the disk fills at the first write of the next checkpoint
        disk_fills_at(monkeypatch, 1)
        return real_save(*args, **kwargs)

    monkeypatch.setattr("electra.pretraining.pretrain.save_checkpoint", save_on_a_full_disk)
    with pytest.raises(UserError, match=r"step-00000012: could not save the checkpoint \(the disk is full\); "
                                        r"the previous checkpoint step-00000009 is intact"):
        pretrain(data, run, resume=True, max_steps=12, progress=False)
    after = {c.name: (c / "model.safetensors").read_bytes() for c in checkpoint_dirs(run)}
    assert after == before  # nothing lost, no half-written step-12
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp folder left


def test_the_best_held_out_checkpoint_is_kept_besides_the_last_k(tmp_path, monkeypatch):
    import electra.pretraining.pretrain as pt

    # Held-out losses by evaluation step: best at step 4, worse afterwards.
    losses = {2: 5.0, 4: 1.0, 6: 3.0, 8: 4.0, 10: 2.0}
    steps = iter(sorted(losses))
    monkeypatch.setattr(pt, "held_out_loss", lambda record, t: losses[next(steps)])
    data = make_data_dir(tmp_path / "data")
    overrides = [o for o in SMALL if not o.startswith(("train.save_every", "train.keep_checkpoints",
                                                       "train.eval_every"))]
    run = pretrain(data, tmp_path / "run", preset="tiny", max_steps=10, progress=False,
                   overrides=overrides + ["train.eval_every=2", "train.save_every=2", "train.keep_checkpoints=1"])
    names = [c.name for c in checkpoint_dirs(run)]
    assert names == ["step-00000004", "step-00000010"]  # the newest 1 + the best held-out one
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best == {"checkpoint": "step-00000004", "step": 4, "loss": 1.0}
    assert all(checkpoint_problem(run / "checkpoints" / n) is None for n in names)
