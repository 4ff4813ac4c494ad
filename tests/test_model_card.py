"""Model cards: every export and every fine-tuned model folder holds a README.md whose YAML
metadata parses, whose numbers are the run's own, and transformers still loads the folder."""

import json

import pytest
from synthetic import SMALL_RUN, make_data_dir
from toy_tasks import save_toy_model, write_sst

from electra.finetuning.finetune import finetune
from electra.pretraining.export import export_run
from electra.pretraining.plots import plot_run
from electra.pretraining.pretrain import pretrain

yaml = pytest.importorskip("yaml")
transformers = pytest.importorskip("transformers")


def card(folder):
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head), body


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    data = make_data_dir(root / "data")
    run = pretrain(data, root / "run", preset="tiny", max_steps=6, overrides=SMALL_RUN, progress=False)
    plot_run(run)
    return run


def test_an_export_has_a_card_per_folder_with_the_runs_numbers(run, tmp_path):
    disc, gen = export_run(run, tmp_path / "hf")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "flops" in r][-1]
    last_eval = [r for r in records if r.get("event") == "eval"][-1]
    meta, body = card(disc)
    assert meta["library_name"] == "transformers" and "discriminator" in meta["tags"] and meta["inference"] is False
    assert "| steps | 6 |" in body and f"| tokens seen | {last['tokens_seen']} |" in body
    assert f"| training FLOPs (analytic) | {last['flops']:.3g} |" in body
    assert f"| eval_disc_auc | {last_eval['eval_disc_auc']:.4g} |" in body
    assert "| training examples | 96 |" in body and "![training curves](curves.png)" in body
    assert (disc / "curves.png").is_file()
    gen_meta, gen_body = card(gen)
    assert gen_meta["pipeline_tag"] == "fill-mask" and "ElectraForMaskedLM.from_pretrained" in gen_body
    transformers.ElectraForPreTraining.from_pretrained(disc)  # the card changes nothing transformers reads
    transformers.ElectraForMaskedLM.from_pretrained(gen)


def test_a_fine_tuned_model_has_a_card_with_its_dev_scores(tmp_path):
    (tmp_path / "m").mkdir()
    model = save_toy_model(tmp_path / "m", [], 64)
    train, dev = write_sst(tmp_path / "train.tsv", 64, 0), write_sst(tmp_path / "dev.tsv", 20, 1)
    results = finetune(model, "classification", train, dev, tmp_path / "ft", seeds=2,
                       overrides=["epochs=1", "batch_size=16", "eval_every=4"], progress=False)
    meta, body = card(tmp_path / "ft" / "model")
    assert meta["pipeline_tag"] == "text-classification" and "fine-tuned" in meta["tags"]
    median = results["summary"]["accuracy"]["median"]
    assert f"| dev accuracy (median of 2 seeds) | {median:.4g} |" in body and "| labels | 0, 1 |" in body
    assert "ElectraForSequenceClassification.from_pretrained" in body
    transformers.ElectraForSequenceClassification.from_pretrained(tmp_path / "ft" / "model")
