"""Fine-tuning under torchrun (2 gloo processes on CPU) equals the one-process run with the same global batch:
the same per-step losses, evaluations, best step and saved weights; only rank 0 writes and prints.

The batches are chosen awkwardly on purpose: in batches of 8, 43 classification examples leave an epoch's last
batch with 3 (an uneven split, 1 and 2: averaging the ranks' own means would be wrong), 33 tagging examples
with 1 (one rank gets none and runs a stand-in weighted 0). QA's loss depends on the padding (its softmax runs
over padded positions), so the ranks must pad their slices like the whole batch. Tagging normalises by labelled tokens, which differ between the ranks'
slices: averaging the ranks' own means would not give the one-process loss. Dropout is 0 (each rank draws its
own dropout masks, so with dropout the runs can only agree statistically).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from toy_tasks import save_toy_model, write_conll, write_squad, write_sst

from electra.config import ModelConfig
from electra.data.tokenizer import load_tokenizer
from electra.finetuning.finetune import finetune, loss_count, rank_slice, share_of_loss
from electra.finetuning.tasks import IGNORE, collate, make_task
from electra.model import ElectraForTokenClassification
from electra.runtime.distributed import Dist

ROOT = Path(__file__).resolve().parents[1]
# 2 epochs of 4 to 6 batches; an evaluation every 4 steps and at the end.
RECIPE = ["epochs=2", "batch_size=8", "learning_rate=3e-3", "layerwise_lr_decay=1.0", "eval_every=4", "log_every=1"]
QA = ["max_seq_length=16", "doc_stride=4", "max_query_length=8"]  # contexts cut into 2-3 windows
# QA's start/end softmax over positions ignores a shift common to all positions, so these two biases get only
# rounding noise as gradient (in one process too), which Adam scales up to steps of the learning rate's size:
# they start at 0 and stay tiny, but their noise differs between runs. Not compared.
NOISE_ONLY = ["qa_outputs.bias", "electra.encoder.layer.1.output.LayerNorm.bias"]

# Run by torchrun in place of `-m electra`: records every write under OUT, per rank, into LOG_DIR (outside OUT).
WRAPPER = """
import os, runpy, sys
OUT, LOG_DIR = os.path.realpath(sys.argv[1]), sys.argv[2]
RANK = os.environ["RANK"]
WRITES = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.copyfile", "shutil.rmtree"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

def under_out(arg):
    return isinstance(arg, (str, os.PathLike)) and os.path.realpath(arg).startswith(OUT)

def hook(event, args):
    if event == "open":
        writes = isinstance(args[2], int) and args[2] & WRITE_FLAGS and under_out(args[0])
    else:
        writes = event in WRITES and any(under_out(a) for a in args)
    if writes:
        with open(os.path.join(LOG_DIR, "writes-rank" + RANK), "a") as f:
            f.write(event + " " + " ".join(map(str, args)) + "\\n")

sys.addaudithook(hook)
sys.argv = ["electra", *sys.argv[3:]]
runpy.run_module("electra", run_name="__main__")
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tasks")
    # varied lengths: sentences of 2-10 filler words, 1-9 tagged words, contexts of 3-9 filler words
    sst, conll, squad = dict(filler=(2, 10)), dict(words=(1, 9)), dict(filler=(3, 9))
    return {"classification": (write_sst(d / "train.tsv", 43, 0, **sst), write_sst(d / "dev.tsv", 20, 1, **sst)),
            "tagging": (write_conll(d / "train.conll", 33, 0, **conll), write_conll(d / "dev.conll", 20, 1, **conll)),
            "qa": (write_squad(d / "train.json", 12, 0, **squad), write_squad(d / "dev.json", 10, 1, **squad))}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random ELECTRA discriminator (dropout 0) with a tokenizer trained on the toy words."""
    return save_toy_model(tmp_path_factory.mktemp("model"), ["what", "answer", "is", "?", "."], 64)


def _torchrun_finetune(model, task, train, dev, out, logs, seeds, recipe):
    """``torchrun --nproc-per-node 2 -m electra finetune ...`` (through WRAPPER, which records the writes)."""
    logs.mkdir()
    wrapper = logs / "wrapper.py"
    wrapper.write_text(WRAPPER)
    args = ["finetune", "--model", str(model), "--task", task, "--train", str(train), "--dev", str(dev),
            "--out", str(out), "--seeds", str(seeds), "--quiet", *[a for kv in recipe for a in ("--set", kv)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(wrapper), str(out), str(logs), *args]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _records(run, seed):
    return [json.loads(line) for line in (run / f"seed-{seed}" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("task,seeds,recipe", [("classification", 2, RECIPE), ("tagging", 1, RECIPE),
                                                ("qa", 1, RECIPE + QA)])
def test_two_processes_give_the_single_process_run(model_dir, files, tmp_path, task, seeds, recipe):
    train, dev = files[task]
    single = tmp_path / "single"
    expected = finetune(model_dir, task, train, dev, single, seeds=seeds, overrides=recipe, progress=False)
    run, logs = tmp_path / "ddp", tmp_path / "logs"
    stdout = _torchrun_finetune(model_dir, task, train, dev, run, logs, seeds, recipe)

    initial = load_file(str(model_dir / "model.safetensors"))
    for seed in range(1, seeds + 1):
        ours, theirs = _records(single, seed), _records(run, seed)
        losses = {r["step"]: r["loss"] for r in ours if "loss" in r}
        ddp_losses = {r["step"]: r["loss"] for r in theirs if "loss" in r}
        steps = max(losses)
        assert steps >= 8 and sorted(ddp_losses) == sorted(losses) == list(range(1, steps + 1))
        assert max(abs(losses[s] - ddp_losses[s]) for s in losses) <= 1e-5
        assert len(set(losses.values())) > 1  # it trained: the loss moved
        # the same evaluations, hence the same best step (rank 0 decided and told the other)
        evals = [{k: v for k, v in r.items() if k != "seconds"} for r in ours if r.get("event") == "eval"]
        ddp_evals = [{k: v for k, v in r.items() if k != "seconds"} for r in theirs if r.get("event") == "eval"]
        assert [r["step"] for r in evals] == [*range(4, steps, 4), steps]
        for a, b in zip(evals, ddp_evals, strict=True):
            assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-5) for k in a)
        # the saved best weights
        a = load_file(str(single / f"seed-{seed}" / "best" / "model.safetensors"))
        b = load_file(str(run / f"seed-{seed}" / "best" / "model.safetensors"))
        assert a.keys() == b.keys()
        noise = set(NOISE_ONLY if task == "qa" else ())
        assert max((a[k] - b[k]).abs().max().item() for k in a if k not in noise) <= 1e-5
        assert all(a[k].abs().max() < 1e-3 and b[k].abs().max() < 1e-3 for k in noise)
        moved = max((a[k] - initial[k]).abs().max().item() for k in initial if k in a)
        assert moved > 1e-3  # the encoder was fine-tuned, so equal weights mean equal training
    results = json.loads((run / "results.json").read_text())
    assert [(r["seed"], r["best_step"]) for r in results["seeds"]] == \
        [(r["seed"], r["best_step"]) for r in expected["seeds"]]
    assert (run / "model" / "task.json").is_file()

    # Only rank 0 wrote into the folder (its writes are recorded: the recording works) and printed.
    assert not (logs / "writes-rank1").exists(), (logs / "writes-rank1").read_text()[:2000]
    rank0 = (logs / "writes-rank0").read_text()
    assert "metrics.jsonl" in rank0 and "results.json" in rank0
    assert stdout.count("best dev") == seeds and stdout.count(f"{task}: ") == 1
    assert json.loads((run / "finetune.json").read_text())["world_size"] == 2


# --------------------------------------------------------------------------- in one process: the pieces


def test_rank_slices_cover_the_global_batch_once():
    for n in (1, 5, 8, 13):
        for world in (1, 2, 3, 4):
            slices = [rank_slice(list(range(n)), Dist(rank=r, world_size=world)) for r in range(world)]
            assert [i for s in slices for i in s] == list(range(n))
            assert max(map(len, slices)) - min(map(len, slices)) <= 1
    assert rank_slice([7], Dist(rank=0, world_size=2)) == [] and rank_slice([7], Dist(rank=1, world_size=2)) == [7]


def test_rank_shares_sum_to_the_full_batch_gradient_for_token_level_losses(model_dir, files):
    # Simulated ranks in one process: the shares' gradients, summed (what DDP's SUM hook does), equal the
    # whole batch's gradient, although the slices hold different numbers of labelled tokens; an empty slice
    # (stand-in example, weight 0) adds nothing.
    tok = load_tokenizer(model_dir)
    task = make_task("tagging", {})
    feats = task.featurize(task.read_train(files["tagging"][0]), tok, 64, training=True)[:5]
    counts = [loss_count(f) for f in feats]
    assert len(set(counts)) > 1 and counts == [sum(x != IGNORE for x in f["labels"]) for f in feats]
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.get_vocab_size(), embedding_size=16, hidden_size=16, num_hidden_layers=1,
                      num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = ElectraForTokenClassification(cfg, task.num_labels)

    def grads(batch_feats, count, total):
        model.zero_grad()
        b = collate(batch_feats, 0)
        loss = share_of_loss(task, model(b["input_ids"], b["attention_mask"], b["token_type_ids"]), b, count, total)
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    total = sum(counts)
    full_loss, full = grads(feats, total, total)
    for world in (3, 6):  # 6 ranks for 5 examples: one slice is empty
        summed_loss, summed = 0.0, [torch.zeros_like(g) for g in full]
        for r in range(world):
            idx = rank_slice(list(range(5)), Dist(rank=r, world_size=world))
            loss, g = grads([feats[i] for i in idx or [0]], sum(counts[i] for i in idx), total)
            summed_loss += loss
            summed = [s + x for s, x in zip(summed, g)]
        assert summed_loss == pytest.approx(full_loss, abs=1e-6)
        assert max((s - f).abs().max().item() for s, f in zip(summed, full)) <= 1e-6
