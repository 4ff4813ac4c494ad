"""A pre-training run survives SIGTERM, SIGKILL (also mid-checkpoint) and non-finite steps, and loses nothing."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from synthetic import make_data_dir

from electra.errors import UserError
from electra.pretraining.pretrain import pretrain
from electra.runtime.checkpoint import checkpoint_dirs, checkpoint_problem
from electra.runtime.preemption import StopSignals

SMALL = ["model.hidden_size=32", "model.embedding_size=24", "model.num_hidden_layers=2", "model.intermediate_size=64",
         "train.batch_size=8", "train.log_every=1", "train.eval_every=1000", "generator.hidden_fraction=0.5"]
ROOT = Path(__file__).resolve().parents[1]


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _losses(run):
    return {r["step"]: (r["gen_loss"], r["disc_loss"]) for r in _records(run) if "gen_loss" in r}


def _last_step(run):
    try:
        return max((r["step"] for r in _records(run) if "gen_loss" in r), default=0)
    except (OSError, ValueError):
        return 0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("d") / "data", n_train=400)


# A child process: pre-trains with CLI-like arguments; SLOW_SAVE makes each checkpoint write take a while
# (by slowing its fsync), so that a test can kill it in the middle of one.
CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import electra.runtime.files as ck
    if {slow_save}:
        fsync_tree = ck._fsync_tree
        ck._fsync_tree = lambda path: (time.sleep({slow_save}), fsync_tree(path))
    from electra.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _child(data, run, steps, extra=(), slow_save=0.0, resume=False):
    args = ["pretrain", "--data", str(data), "--out", str(run), "--quiet", "--max-steps", str(steps)]
    args += ["--resume"] if resume else ["--preset", "tiny", *[a for kv in [*SMALL, *extra] for a in ("--set", kv)]]
    code = CHILD.format(root=str(ROOT), slow_save=slow_save)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait(pred, proc, timeout=120):
    deadline = time.time() + timeout
    while not pred():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def test_sigterm_finishes_the_step_saves_and_says_how_to_resume(data, tmp_path):
    run = tmp_path / "run"
    proc = _child(data, run, 10_000, extra=["train.save_every=1000"])
    _wait(lambda: _last_step(run) >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    stopped = [r for r in _records(run) if r.get("event") == "stopped"]
    assert len(stopped) == 1 and stopped[0]["reason"] == "SIGTERM"
    step = stopped[0]["step"]
    assert f"stopped by SIGTERM after step {step}" in err and f"--out {run} --resume" in err
    assert len(err.strip().splitlines()) == 1
    ckpts = checkpoint_dirs(run)
    assert [c.name for c in ckpts] == [f"step-{step:08d}"] and checkpoint_problem(ckpts[0]) is None
    assert json.loads((ckpts[0] / "state.json").read_text())["step"] == step


def test_a_second_signal_acts_at_once():
    # (a shell running us in the background may have set SIGINT to "ignore": start from Python's default)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested == signal.SIGINT  # first: only a flag
            with pytest.raises(KeyboardInterrupt):  # second: the default behaviour (Ctrl-C raises at once)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with StopSignals() as stop:  # an ignored signal (nohup) stays ignored
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, outer)


def test_sigkill_at_three_points_including_mid_checkpoint_loses_nothing(data, tmp_path):
    steps = 24
    reference = tmp_path / "reference"
    ref = _child(data, reference, steps, extra=["train.save_every=4"])
    ref.communicate(timeout=300)
    assert ref.returncode == 0

    run = tmp_path / "run"
    proc = _child(data, run, steps, extra=["train.save_every=4"])
    _wait(lambda: _last_step(run) >= 6, proc)              # 1: between checkpoints (after step-4)
    proc.kill()
    proc.wait()
    proc = _child(data, run, steps, resume=True, slow_save=1.0)
    _wait(lambda: any(p.name.startswith(".step-") for p in (run / "checkpoints").iterdir()), proc)
    proc.kill()                                          # 2: in the middle of writing a checkpoint
    proc.wait()
    assert all(checkpoint_problem(c) is None for c in checkpoint_dirs(run))  # the half-written one is not visible
    proc = _child(data, run, steps, resume=True)
    _wait(lambda: _last_step(run) >= 17, proc)             # 3: later, between checkpoints again
    proc.kill()
    proc.wait()
    proc = _child(data, run, steps, resume=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]

    a = load_file(str(checkpoint_dirs(reference)[-1] / "model.safetensors"))
    b = load_file(str(checkpoint_dirs(run)[-1] / "model.safetensors"))
    assert checkpoint_dirs(run)[-1].name == f"step-{steps:08d}" and a.keys() == b.keys()
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # the torn write was cleaned
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)
    la, lb = _losses(reference), _losses(run)
    assert sorted(lb) == list(range(1, steps + 1))
    assert all(abs(la[s][1] - lb[s][1]) <= 1e-5 for s in la)


def test_non_finite_steps_are_skipped_counted_and_stop_the_run_after_k(data, tmp_path, monkeypatch):
    from electra.pretraining.objective import ElectraPretrainer

    forward = ElectraPretrainer.forward
    calls = {"n": 0}
    poisoned = {3, 4} | set(range(8, 100))  # steps 3-4 are a passing fault; from step 8 on it persists

    def poisoned_forward(self, *args, **kwargs):
        calls["n"] += 1
        loss, stats = forward(self, *args, **kwargs)
        return (loss * float("nan") if calls["n"] in poisoned else loss), stats

    monkeypatch.setattr(ElectraPretrainer, "forward", poisoned_forward)
    run = tmp_path / "run"
    with pytest.raises(UserError, match=r"the last 3 steps \(to step 10\) had non-finite losses or gradients and "
                                        r"were skipped; the weights are those from before the fault, saved as "
                                        r"step-00000010"):
        pretrain(data, run, preset="tiny", max_steps=50, progress=False,
                 overrides=SMALL + ["train.max_skipped_steps=3", "train.save_every=5", "train.eval_every=1000"])
    records = [r for r in _records(run) if "gen_loss" in r]
    assert [r["skipped_steps"] for r in records] == [0, 0, 1, 1, 0, 0, 0, 1, 1, 1]
    # the saved weights are those after step 7, the last finite one: steps 8-10 changed nothing
    saved = load_file(str(checkpoint_dirs(run)[-1] / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in saved.values())
    stopped = [r for r in _records(run) if r.get("event") == "stopped"]
    assert stopped == [{"step": 10, "event": "stopped", "reason": "non-finite gradients"}]


def test_out_of_memory_suggests_a_smaller_micro_batch(data, tmp_path, monkeypatch):
    from electra.pretraining.objective import ElectraPretrainer

    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ElectraPretrainer, "forward", oom)
    with pytest.raises(UserError, match=r"out of memory on cpu with 8 examples per forward pass; try --set "
                                        r"train.micro_batch_size=4 \(gradient accumulation keeps the global batch of 8\)"):
        pretrain(data, tmp_path / "run", preset="tiny", max_steps=5, progress=False, overrides=SMALL)
