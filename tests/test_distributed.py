"""Several processes (torchrun, gloo on CPU) give the single-process run's losses; checkpoints move between
world sizes; FSDP2 matches DDP. Dropout is 0: each rank draws its own dropout masks, so with dropout a
multi-process run cannot equal a single-process one exactly."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from synthetic import make_data_dir

from electra.config import TrainConfig
from electra.errors import UserError
from electra.pretraining.pretrain import pretrain
from electra.pretraining.setup import check_world
from electra.pretraining.step import dropout_seed
from electra.runtime.distributed import Dist, run_device

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["model.hidden_size=32", "model.embedding_size=24", "model.num_hidden_layers=2", "model.intermediate_size=64",
         "train.batch_size=8", "train.log_every=1", "train.eval_every=5", "train.save_every=5",
         "train.eval_examples=16", "generator.hidden_fraction=0.5",
         "model.hidden_dropout_prob=0", "model.attention_probs_dropout_prob=0"]
STEPS = 20


def _losses(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["gen_loss"], r["disc_loss"]) for r in records if "gen_loss" in r}


def _assert_same(a, b, tol, steps=range(1, STEPS + 1)):
    assert sorted(b) == list(range(1, STEPS + 1)), sorted(b)
    worst = max(abs(a[s][i] - b[s][i]) for s in steps for i in range(2))
    assert worst <= tol, worst


def _torchrun(data, run, *, extra=(), resume=False, nproc=2, steps=STEPS, background=False):
    """``torchrun --nproc-per-node 2 -m electra pretrain ...`` (as torch.distributed.run, its module)."""
    args = ["--data", str(data), "--out", str(run), "--quiet", "--max-steps", str(steps)]
    if resume:
        args += ["--resume"]
    else:
        args += ["--preset", "tiny", *[a for kv in [*SMALL, *extra] for a in ("--set", kv)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "electra", "pretrain", *args]
    if background:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("d") / "data")


@pytest.fixture(scope="module")
def single(data, tmp_path_factory):
    return pretrain(data, tmp_path_factory.mktemp("r") / "single", preset="tiny", max_steps=STEPS, overrides=SMALL,
                    progress=False)


@pytest.fixture(scope="module")
def ddp(data, tmp_path_factory):
    return _torchrun(data, tmp_path_factory.mktemp("r") / "ddp")


def test_two_processes_give_the_single_process_losses(single, ddp):
    _assert_same(_losses(single), _losses(ddp), 1e-5)
    start = json.loads((ddp / "metrics.jsonl").read_text().splitlines()[0])
    assert (start["world_size"], start["micro_batch_size"], start["accumulation_steps"],
            start["global_batch_size"]) == (2, 4, 1, 8)
    kept = sorted(p.name for p in (ddp / "checkpoints").iterdir() if p.is_dir())
    best = json.loads((ddp / "checkpoints" / "best.json").read_text())["checkpoint"]
    assert kept[-2:] == ["step-00000015", "step-00000020"] and best in kept and len(kept) <= 3  # last 2 + best


def test_accumulation_with_two_processes_gives_the_same_losses(single, data, tmp_path):
    # 2 ranks x 2 micro-batches of 2 (no gradient all-reduce on the first micro-step).
    run = _torchrun(data, tmp_path / "acc", extra=["train.micro_batch_size=2"])
    _assert_same(_losses(single), _losses(run), 1e-5)


def test_two_process_stop_and_resume_equals_the_uninterrupted_run(data, ddp, single, tmp_path):
    run = _torchrun(data, tmp_path / "run", extra=["train.stop_at=10"])
    assert max(_losses(run)) == 10
    # (d) the 2-rank checkpoint also resumes on 1 process
    shutil.copytree(run, tmp_path / "on_one")
    _torchrun(data, run, resume=True)
    _assert_same(_losses(ddp), _losses(run), 1e-5)
    pretrain(data, tmp_path / "on_one", resume=True, progress=False)
    _assert_same(_losses(ddp), _losses(tmp_path / "on_one"), 1e-5)


def test_fsdp_matches_ddp(ddp, data, tmp_path_factory):
    run = _torchrun(data, tmp_path_factory.mktemp("r") / "fsdp", extra=["train.parallel=fsdp"])
    _assert_same(_losses(ddp), _losses(run), 1e-4)


def test_checkpoints_move_between_world_sizes_and_fsdp(data, single, tmp_path):
    # FSDP2 on 2 ranks saves (gathered, single-process layout); 1 process resumes it.
    run = _torchrun(data, tmp_path / "fsdp", extra=["train.parallel=fsdp", "train.stop_at=10"])
    pretrain(data, run, resume=True, progress=False)
    _assert_same(_losses(single), _losses(run), 1e-5)
    # 1 process saves; 2 FSDP2 ranks resume it (sharding the loaded weights and optimiser state).
    run = pretrain(data, tmp_path / "one", preset="tiny", max_steps=STEPS, overrides=SMALL + ["train.stop_at=10"],
                   progress=False)
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"]["parallel"] = "fsdp"
    (run / "config.json").write_text(json.dumps(cfg))
    _torchrun(data, run, resume=True)
    _assert_same(_losses(single), _losses(run), 1e-5)


def test_each_rank_and_step_draws_its_own_dropout_masks():
    # The loop reseeds torch with dropout_seed(seed, step, rank) before every step's forward passes.
    seeds = {(seed, step, rank): dropout_seed(seed, step, rank) for seed in (0, 1) for step in (0, 1, 2, 10**6)
             for rank in range(4)}
    assert len(set(seeds.values())) == len(seeds) and all(0 <= v < 2**63 for v in seeds.values())
    assert dropout_seed(1, 2, 3) == seeds[(1, 2, 3)]  # a function of its arguments alone: resume draws them again

    def masks(seed):
        torch.manual_seed(seed)
        return torch.nn.functional.dropout(torch.ones(64, 64), 0.1)
    assert torch.equal(masks(seeds[(0, 1, 0)]), masks(dropout_seed(0, 1, 0)))
    assert not torch.equal(masks(seeds[(0, 1, 0)]), masks(seeds[(0, 1, 1)]))  # ranks 0 and 1, the same step


def test_global_batch_must_split_evenly_over_processes():
    assert check_world(TrainConfig(batch_size=8), Dist(world_size=2)) == 1
    assert check_world(TrainConfig(batch_size=8, micro_batch_size=2), Dist(world_size=2)) == 2
    with pytest.raises(UserError, match="divisible by the number of processes"):
        check_world(TrainConfig(batch_size=8, micro_batch_size=4), Dist(world_size=4))
    with pytest.raises(UserError, match="divisible by the number of processes"):
        check_world(TrainConfig(batch_size=6), Dist(world_size=4))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_asking_for_a_missing_gpu_names_the_setting_alone_and_under_torchrun():
    assert run_device("auto", Dist()).type == run_device("cpu", Dist(world_size=2)).type == "cpu"
    for d in (Dist(), Dist(world_size=2)):
        with pytest.raises(UserError, match=r"^train\.device=cuda:1 but no CUDA GPU .* --set train\.device=cpu$"):
            run_device("cuda:1", d)
        with pytest.raises(UserError, match=r"^device=cuda but no CUDA GPU .* --set device=cpu$"):
            run_device("cuda", d, field="device")


def test_parallel_choice_is_validated():
    with pytest.raises(UserError, match="train.parallel 'zero' is not one of ddp, fsdp"):
        TrainConfig(parallel="zero").validate()


def test_sigterm_to_one_rank_stops_all_at_the_same_step_with_a_checkpoint(data, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun(data, run, extra=["train.save_every=1000", "train.eval_every=1000"], steps=10_000,
                     background=True)
    deadline = time.time() + 120
    while len(_losses(run) if (run / "metrics.jsonl").exists() else {}) < 3:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True)
    ranks = {}
    for pid in children.stdout.split():
        env = dict(e.split(b"=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in e)
        ranks[int(env[b"RANK"])] = int(pid)
    os.kill(ranks[1], signal.SIGTERM)  # only rank 1 is told
    proc.communicate(timeout=120)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    stopped = [r for r in records if r.get("event") == "stopped"]
    assert len(stopped) == 1 and stopped[0]["reason"] == "SIGTERM"
    assert [p.name for p in (run / "checkpoints").iterdir()] == [f"step-{stopped[0]['step']:08d}"]
