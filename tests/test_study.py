"""`electra study`: a small grid end to end, its CSV and plot, and resumption after a kill mid-grid."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from electra.data.corpus import build_dataset
from electra.data.tokenizer import train_tokenizer
from electra.errors import UserError
from electra.study import Probe, run_reprobe, run_study, seeds_label

WORDS = "the film was quite a story with some acting and music in it great awful dull fine".split()
TINY = ["model.hidden_size=32", "model.embedding_size=32", "model.num_hidden_layers=2", "model.intermediate_size=64",
        "model.num_attention_heads=2", "train.batch_size=8", "train.log_every=1", "train.eval_every=1000",
        "train.save_every=2", "generator.hidden_fraction=0.5"]
FT = ["epochs=1", "batch_size=16"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    rng = random.Random(0)
    corpus = root / "corpus.txt"
    docs = ["\n".join(" ".join(rng.choices(WORDS, k=12)) + " ." for _ in range(8)) for _ in range(40)]
    corpus.write_text("\n\n".join(docs) + "\n")
    train_tokenizer([corpus], 120, root / "tok", progress=False)
    build_dataset([corpus], root / "tok", root / "data", max_seq_length=32, progress=False)
    for split, n in (("train", 64), ("dev", 32)):
        rows = ["sentence\tlabel"] + [f"{' '.join(rng.choices(WORDS, k=6))}\t{i % 2}" for i in range(n)]
        (root / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root


def _per_step_flops(root):
    from electra.config import apply_overrides, preset_config
    from electra.pretraining.flops import training_flops_per_step

    cfg = preset_config("tiny", vocab_size=120)
    apply_overrides(cfg, TINY)
    return training_flops_per_step(cfg, 32)["train"]


def test_study_grid_csv_plot_and_resume_after_kill(setup, tmp_path):
    root = setup
    budget = _per_step_flops(root) * 4.5  # 4 steps of electra; mlm (cheaper per step) gets more
    out = tmp_path / "study"
    args = [sys.executable, "-m", "electra", "study", "--data", str(root / "data"), "--out", str(out),
            "--objectives", "electra,mlm", "--budgets", str(budget), "--seeds", "1,2", "--baseline",
            "--probe", f"sst=classification:{root / 'train.tsv'}:{root / 'dev.tsv'}", "--quiet",
            *[a for kv in TINY for a in ("--set", kv)], *[a for kv in FT for a in ("--finetune-set", kv)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Kill the study (and its children) as soon as the first cell has finished: mid-grid.
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not list((out / "cells").glob("*.json")):  # (an absent folder globs to nothing)
        assert proc.poll() is None and time.time() < deadline, "the study ended or hung before its first cell"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert 1 <= len(finished) < 6

    done = subprocess.run(args, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    cells = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert len(cells) == 6  # 2 objectives x 1 budget x 2 seeds + 2 baseline seeds
    assert all(cells[name] == mtime for name, mtime in finished.items())  # finished cells were not redone

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 6 and {r["objective"] for r in rows} == {"electra", "mlm", "scratch"}
    for r in rows:
        assert float(r["pretrain_flops"]) <= budget and 0 <= float(r["score"]) <= 1 and r["metric"] == "accuracy"
    electra_steps = {int(r["pretrain_steps"]) for r in rows if r["objective"] == "electra"}
    mlm_steps = {int(r["pretrain_steps"]) for r in rows if r["objective"] == "mlm"}
    assert electra_steps == {4} and min(mlm_steps) > 4  # compute-matched: the cheaper objective runs longer
    assert {float(r["pretrain_flops"]) for r in rows if r["objective"] == "scratch"} == {0.0}
    assert (out / "results.png").stat().st_size > 10_000

    # Re-probe two of the finished cells with another fine-tuning setting; the study itself stays as it is.
    study_files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    reprobe = [sys.executable, "-m", "electra", "study", "--out", str(out), "--reprobe", "two_epochs", "--objectives",
               "electra,scratch", "--seeds", "1", "--quiet", "--finetune-set", "epochs=2"]
    done = subprocess.run(reprobe, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    again = out / "reprobes" / "two_epochs"
    cells = {p.stem: json.loads(p.read_text()) for p in (again / "cells").glob("*.json")}
    electra_cell = next(n for n in cells if n.startswith("electra-"))
    assert set(cells) == {electra_cell, "scratch-0-s1"} and electra_cell.endswith("-s1")
    for name, cell in cells.items():
        original = json.loads((out / "cells" / f"{name}.json").read_text())
        assert {k: v for k, v in cell.items() if k != "scores"} == {k: v for k, v in original.items() if k != "scores"}
        record = json.loads((again / "finetune" / name / "sst" / "finetune.json").read_text())
        # The study's own fine-tuning settings (FT), then the re-probe's on top.
        assert record["config"]["epochs"] == 2 and record["config"]["batch_size"] == 16 and record["config"]["seed"] == 1
        assert record["config"]["init"] == ("scratch" if name.startswith("scratch") else "pretrained")
        assert cell["scores"]["sst"]["score"] == json.loads(
            (again / "finetune" / name / "sst" / "results.json").read_text())["seeds"][0]["accuracy"]
    assert len(list(csv.DictReader(open(again / "results.csv")))) == 2
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and again not in p.parents} == study_files
    # A rerun of the same re-probe keeps its finished cells; another setting under the same name is refused.
    reprobed = {p.name: p.stat().st_mtime_ns for p in (again / "cells").glob("*.json")}
    rerun = subprocess.run(reprobe, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0 and "(2 done)" in rerun.stdout, rerun.stderr[-2000:]
    assert {p.name: p.stat().st_mtime_ns for p in (again / "cells").glob("*.json")} == reprobed
    other = subprocess.run([*reprobe[:-1], "epochs=3"], env=env, capture_output=True, text=True)
    assert other.returncode == 2 and "holds a different re-probe" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


def test_study_refuses_a_different_grid_in_the_same_folder(setup, tmp_path):
    root = setup
    out = tmp_path / "s"
    probe = Probe.parse(f"classification:{root / 'train.tsv'}:{root / 'dev.tsv'}")
    out.mkdir()
    (out / "study.json").write_text(json.dumps({"something": "else"}))
    with pytest.raises(UserError, match="holds a different study"):
        run_study(out, str(root / "data"), "tiny", ["electra"], [1e9], [1], [probe])
    with pytest.raises(UserError, match=r"is not \[LABEL=\]OBJECTIVE or \[LABEL=\]RECIPE:OBJECTIVE"):
        run_study(tmp_path / "t", str(root / "data"), "tiny", ["bert"], [1e9], [1], [probe])
    with pytest.raises(UserError, match="RECIPE one of paper, small_budget"):
        run_study(tmp_path / "t", str(root / "data"), "tiny", ["cramming:mlm"], [1e9], [1], [probe])
    with pytest.raises(UserError, match="expected TASK:TRAIN:DEV"):
        Probe.parse("sentiment:a:b")


def test_an_arm_names_its_recipe_and_objective():
    from electra.study import Cell
    assert Cell("mlm", 1e14, 2).pretrain_args() == ["--set", "train.objective=mlm"]  # the preset's recipe
    paper = Cell("paper:electra", 1e14, 2)
    assert paper.pretrain_args() == ["--recipe", "paper", "--set", "train.objective=electra"]
    assert paper.name == "paper-electra-1e+14-s2".replace("+", "")


def test_a_labelled_arm_lets_one_objective_appear_twice(setup, tmp_path):
    from electra.study import Cell, arm_overrides, check_arm
    wwm, char = Cell("wwm=small_budget:electra", 1e13, 1), Cell("char=small_budget:electra", 1e13, 1)
    assert wwm.pretrain_args() == char.pretrain_args() == ["--recipe", "small_budget", "--set", "train.objective=electra"]
    assert (wwm.name, char.name) == ("wwm-1e13-s1", "char-1e13-s1")
    given = ["wwm@train.masking=whole_word", "train.learning_rate=1e-3"]
    assert arm_overrides(given, "wwm=small_budget:electra") == ["train.masking=whole_word", "train.learning_rate=1e-3"]
    assert arm_overrides(given, "char=small_budget:electra") == ["train.learning_rate=1e-3"]
    check_arm("wwm=mlm")
    for bad in ("=electra", "a b=electra", "wwm=bert", "x@y=electra"):
        with pytest.raises(UserError, match="is not \\[LABEL=\\]OBJECTIVE"):
            check_arm(bad)
    probe = Probe.parse(f"classification:{setup / 'train.tsv'}:{setup / 'dev.tsv'}")
    with pytest.raises(UserError, match="two arms share a name"):
        run_study(tmp_path / "v", str(setup / "data"), "tiny", ["a=electra", "a=mlm"], [1e9], [1], [probe])


def test_a_set_value_can_apply_to_one_arm(setup, tmp_path):
    from electra.study import arm_overrides
    given = ["train.learning_rate=1e-3", "mlm@train.short_seq_length=8", "paper:electra@train.mask_prob=0.2"]
    assert arm_overrides(given, "mlm") == ["train.learning_rate=1e-3", "train.short_seq_length=8"]
    assert arm_overrides(given, "paper:electra") == ["train.learning_rate=1e-3", "train.mask_prob=0.2"]
    assert arm_overrides(given, None) == ["train.learning_rate=1e-3"]  # the from-scratch architecture
    probe = Probe.parse(f"classification:{setup / 'train.tsv'}:{setup / 'dev.tsv'}")
    with pytest.raises(UserError, match="'bert' is not one of the study's arms"):
        run_study(tmp_path / "u", str(setup / "data"), "tiny", ["electra"], [1e9], [1], [probe],
                  pretrain_set=["bert@train.mask_prob=0.2"])


def test_the_plot_label_says_when_budgets_have_different_seed_counts():
    # A grid that is still filling in (3 seeds at one budget, 1 at another) must not be labelled "mean of 3".
    assert seeds_label([[0.7, 0.71, 0.72], [0.69, 0.70, 0.73]]) == "mean of 3 seeds"
    assert seeds_label([[0.7, 0.71, 0.72], [0.69]]) == "mean of 1–3 seeds"


def test_a_reprobe_names_what_it_cannot_do(setup, tmp_path):
    """Re-probing refuses, in one line, a folder that is not a study, a probe or arm the study does not have, a
    cell whose pre-training run is elsewhere, and options that belong to the study."""
    root = setup
    with pytest.raises(UserError, match="not a study"):
        run_reprobe(tmp_path / "nothing", "x")
    study = tmp_path / "study"
    probe = Probe.parse(f"sst=classification:{root / 'train.tsv'}:{root / 'dev.tsv'}")
    (study / "cells").mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({"probes": [probe.__dict__], "objectives": ["electra"]}))
    cell = {"objective": "electra", "budget": 1e9, "seed": 1, "cell": "electra-1e+09-s1", "pretrain_flops": 1e9,
            "pretrain_steps": 3, "scores": {"sst": {"metric": "accuracy", "score": 0.5, "collapsed": False}}}
    (study / "cells" / "electra-1e+09-s1.json").write_text(json.dumps(cell))
    with pytest.raises(UserError, match="'pos': not a probe of"):
        run_reprobe(study, "x", probes=["pos"])
    with pytest.raises(UserError, match="'mlm' has no finished cell"):
        run_reprobe(study, "x", objectives=["mlm"])
    with pytest.raises(UserError, match="--seeds: 2 has no finished cell"):
        run_reprobe(study, "x", seeds=[2])
    with pytest.raises(UserError, match="has no pre-training run at"):
        run_reprobe(study, "x")  # the cell's run is not in this study's pretrain/
    with pytest.raises(UserError, match="cannot|plain one"):
        run_reprobe(study, "../elsewhere")
    assert not (study / "reprobes").exists()  # nothing half-made
    done = subprocess.run([sys.executable, "-m", "electra", "study", "--out", str(study), "--reprobe", "x", "--data",
                           str(root / "data")], capture_output=True, text=True)
    assert done.returncode == 2 and "--data has no place in it" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = subprocess.run([sys.executable, "-m", "electra", "study", "--out", str(tmp_path / "new")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "needs --data and --budgets" in done.stderr
