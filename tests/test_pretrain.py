"""The pre-training loop on a synthetic data folder: logging, exact resume, export, bad input."""

import json
import subprocess
import sys

import pytest
import torch
from synthetic import SMALL_RUN as SMALL
from synthetic import make_data_dir

from electra.cli import main
from electra.errors import UserError
from electra.interop.hf import load_hf_model
from electra.pretraining.export import export_run
from electra.pretraining.pretrain import pretrain
from electra.runtime.checkpoint import checkpoint_dirs

transformers = pytest.importorskip("transformers")


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _losses(run):
    return {r["step"]: (r["gen_loss"], r["disc_loss"]) for r in _records(run) if "gen_loss" in r}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("d") / "data")


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    return pretrain(data, tmp_path_factory.mktemp("r") / "run", preset="tiny", max_steps=20, overrides=SMALL,
                    progress=False)


def test_log_has_every_metric_and_checkpoints_are_kept(full_run):
    recs = [r for r in _records(full_run) if "gen_loss" in r]
    assert [r["step"] for r in recs] == list(range(1, 21))
    for key in ("gen_loss", "gen_acc", "disc_loss", "disc_acc", "disc_precision", "disc_recall", "replaced_frac",
                "lr", "grad_norm", "tokens_seen", "tokens_per_s"):
        assert all(isinstance(r[key], float | int) for r in recs), key
    assert recs[-1]["tokens_seen"] > recs[0]["tokens_seen"] > 0
    assert 0 < recs[0]["replaced_frac"] <= recs[0]["selected_frac"]
    evals = [r for r in _records(full_run) if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [5, 10, 15, 20]
    assert [p.name for p in checkpoint_dirs(full_run)] == ["step-00000015", "step-00000020"]  # keep 2


def test_stop_and_resume_reproduce_the_uninterrupted_losses(data, full_run, tmp_path):
    run = tmp_path / "run"
    pretrain(data, run, preset="tiny", max_steps=20, overrides=SMALL + ["train.stop_at=10"], progress=False)
    assert max(_losses(run)) == 10
    pretrain(data, run, resume=True, progress=False)
    a, b = _losses(full_run), _losses(run)
    assert sorted(b) == list(range(1, 21))
    for step in range(11, 21):
        assert abs(a[step][0] - b[step][0]) <= 1e-5 and abs(a[step][1] - b[step][1]) <= 1e-5


def test_dropout_masks_depend_on_the_step_not_on_restored_rng_state(data, full_run, tmp_path, monkeypatch):
    # Each step reseeds dropout from (seed, step, rank): a resume that restores no RNG state at all, from a
    # disturbed generator, still draws the uninterrupted run's masks (dropout is on: the tiny preset's 0.1).
    run = tmp_path / "run"
    pretrain(data, run, preset="tiny", max_steps=20, overrides=SMALL + ["train.stop_at=10"], progress=False)
    monkeypatch.setattr(torch, "set_rng_state", lambda state: None)
    torch.manual_seed(12345)
    pretrain(data, run, resume=True, progress=False)
    a, b = _losses(full_run), _losses(run)
    for step in range(11, 21):
        assert abs(a[step][0] - b[step][0]) <= 1e-5 and abs(a[step][1] - b[step][1]) <= 1e-5


def test_export_loads_in_transformers_with_the_same_logits(full_run, tmp_path):
    disc_dir, gen_dir = export_run(full_run, tmp_path / "hf")
    ids = torch.tensor([[2, 10, 11, 12, 3, 13, 14, 3]])
    attn, types = torch.ones_like(ids), torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1]])
    hf_disc = transformers.ElectraForPreTraining.from_pretrained(disc_dir).eval()
    hf_gen = transformers.ElectraForMaskedLM.from_pretrained(gen_dir).eval()
    ours_disc, ours_gen = load_hf_model(disc_dir, "discriminator").eval(), load_hf_model(gen_dir, "generator").eval()
    with torch.no_grad():
        d = (ours_disc(ids, attn, types) - hf_disc(input_ids=ids, attention_mask=attn, token_type_ids=types).logits)
        g = (ours_gen(ids, attn, types) - hf_gen(input_ids=ids, attention_mask=attn, token_type_ids=types).logits)
    assert d.abs().max() <= 1e-4 and g.abs().max() <= 1e-4
    # The generator's shared embeddings are the discriminator's.
    torch.testing.assert_close(hf_gen.electra.embeddings.word_embeddings.weight,
                               hf_disc.electra.embeddings.word_embeddings.weight)


def test_export_takes_a_kept_checkpoint_by_step_or_the_best_one(full_run, tmp_path, capsys):
    from safetensors.torch import load_file
    key = "electra.embeddings.word_embeddings.weight"

    def exported(*args):
        out = tmp_path / "_".join(args or ("newest",))
        assert main(["export", str(full_run), "--out", str(out), *args]) == 0
        return load_file(str(out / "discriminator" / "model.safetensors"))[key]

    step15 = load_file(str(full_run / "checkpoints" / "step-00000015" / "model.safetensors"))["discriminator." + key]
    assert torch.equal(exported("--step", "15"), step15) and not torch.equal(exported(), step15)
    best = json.loads((full_run / "checkpoints" / "best.json").read_text())["checkpoint"]
    in_best = load_file(str(full_run / "checkpoints" / best / "model.safetensors"))["discriminator." + key]
    assert torch.equal(exported("--best"), in_best)
    capsys.readouterr()
    assert main(["export", str(full_run), "--out", str(tmp_path / "x"), "--step", "3"]) == 2
    assert "no checkpoint at step 3; kept: 15, 20" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_output_folder_of_another_run_is_refused(data, full_run):
    with pytest.raises(UserError, match="pass --resume"):
        pretrain(data, full_run, preset="tiny", max_steps=5, overrides=SMALL, progress=False)


@pytest.mark.parametrize("args,message", [
    (["--preset", "huge"], "invalid choice"),
    (["--preset", "tiny", "--set", "train.learnin_rate=1"], "is not a known key; valid keys:"),
    (["--preset", "tiny", "--set", "train.batch_size=abc"], "expected a value of type int"),
    (["--preset", "tiny", "--set", "model.num_attention_heads=3"], "not divisible"),
])
def test_bad_options_give_one_line_and_exit_2(data, tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "electra", "pretrain", "--data", str(data), "--out",
                           str(tmp_path / "x"), "--quiet", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_missing_data_folder_is_a_user_error(tmp_path, capsys):
    assert main(["pretrain", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no manifest.json" in err


def test_continue_pretraining_from_an_export(data, full_run, tmp_path):
    export_run(full_run, tmp_path / "hf")
    run = pretrain(data, tmp_path / "cont", preset="tiny", max_steps=2, overrides=["train.batch_size=8"],
                   progress=False, init=tmp_path / "hf")
    first = [r for r in _records(run) if "gen_loss" in r][0]
    fresh = [r for r in _records(full_run) if "gen_loss" in r]
    # Starting from trained weights, the first losses are those of the end of the first run, not of a fresh model.
    assert first["gen_loss"] < fresh[0]["gen_loss"] - 0.02 or first["disc_loss"] < fresh[0]["disc_loss"] - 0.02
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["hidden_size"] == 32 and cfg["generator"]["hidden_fraction"] == 0.5


def test_plot_writes_a_png(full_run):
    from electra.pretraining.plots import plot_run

    png = plot_run(full_run)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_plot_panels_show_only_metrics_the_objective_has():
    from electra.pretraining.plots import plot_panels
    electra = {"gen_loss": 5.0, "disc_loss": 0.3, "corrupted_loss": 6.0, "corrupted_acc": 0.1}
    assert [k for k, _ in plot_panels(electra)] == ["gen_loss", "disc_loss", "corrupted_loss", "disc_acc",
                                                    "disc_recall", "lr"]
    detecting = dict(electra, disc_auc=0.6, disc_margin=0.01)  # AUC and margin panels when logged
    assert [k for k, _ in plot_panels(detecting)] == ["gen_loss", "disc_loss", "corrupted_loss", "disc_auc",
                                                      "disc_margin", "disc_acc", "disc_recall", "lr"]
    mlm = {"gen_loss": 0.0, "disc_loss": 0.0, "mlm_loss": 5.0, "corrupted_loss": 6.0, "corrupted_acc": 0.1}
    assert [k for k, _ in plot_panels(mlm)] == ["mlm_loss", "corrupted_acc", "mlm_acc", "corrupted_loss",
                                                "grad_norm", "lr"]  # no generator panel full of zeros
    replace_mlm = dict(mlm, gen_loss=4.0)
    assert [k for k, _ in plot_panels(replace_mlm)][:2] == ["mlm_loss", "gen_loss"]


def test_export_refuses_to_replace_a_folder_that_is_not_an_export(full_run, tmp_path):
    victim = tmp_path / "hf" / "discriminator"
    victim.mkdir(parents=True)
    (victim / "notes.txt").write_text("precious")
    with pytest.raises(UserError, match="was not written by `electra export`"):
        export_run(full_run, tmp_path / "hf")
    assert (victim / "notes.txt").read_text() == "precious"
    export_run(full_run, tmp_path / "hf2")
    export_run(full_run, tmp_path / "hf2")  # an earlier export is replaced


def test_the_paper_recipe_is_the_preset_as_it_was_and_small_budget_changes_its_fields():
    from electra.config import TrainConfig, preset_config
    paper = preset_config("tiny", recipe="paper")
    assert paper.recipe == "paper" and not paper.train.local_init and paper.train.learning_rate == 5e-4
    assert paper.train == TrainConfig(learning_rate=5e-4, batch_size=32, max_steps=10_000, warmup_steps=1_000)
    assert preset_config("tiny").recipe == "small_budget"  # tiny (and so the demo) defaults to it
    assert preset_config("small").recipe == preset_config("base").recipe == "paper"
    small = preset_config("tiny", recipe="small_budget")
    assert small.recipe == "small_budget" and small.train.local_init and small.train.learning_rate == 1e-3
    assert small.model == paper.model and small.generator.sharing == paper.generator.sharing
    assert (small.generator.hidden_fraction, small.generator.layers_fraction) == (1.0, 0.25)  # wide, shallow
    assert preset_config("small").recipe == "paper"  # the GPU presets keep the paper's recipe by default
    with pytest.raises(UserError, match="recipe 'fast' is not one of paper, small_budget"):
        preset_config("tiny", recipe="fast")


def test_a_run_records_its_recipe_and_resumes_with_it(tmp_path):
    data = make_data_dir(tmp_path / "data")
    run = pretrain(data, tmp_path / "run", preset="tiny", max_steps=2, overrides=SMALL, progress=False,
                   recipe="paper")
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["recipe"] == "paper" and cfg["train"]["local_init"] is False
    del cfg["recipe"]  # a run from before recipes existed reads as the paper's
    (run / "config.json").write_text(json.dumps(cfg))
    from electra.runtime.checkpoint import load_run_config
    assert load_run_config(run).recipe == "paper"
