"""Continuing pre-training from released weights: `--init` with the two folders of a hub
download, and the data's tokenizer checked against the checkpoint's vocabulary token for token."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from synthetic import SMALL_RUN

from electra.data.corpus import build_dataset
from electra.data.tokenizer import train_tokenizer
from electra.errors import UserError
from electra.pretraining.export import export_run
from electra.pretraining.pretrain import pretrain
from electra.runtime.checkpoint import latest_checkpoint

WORDS = "the whale ship sea captain white water boat night old long great deep wind sail".split()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A short run exported and laid out as the hub's two downloads, and data built with its vocabulary."""
    root = tmp_path_factory.mktemp("hub")
    text = root / "corpus.txt"
    text.write_text("\n".join(" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(12)) for i in range(400))
                    + "\n")
    train_tokenizer([text], 120, root / "tok", progress=False)
    build_dataset([text], root / "tok", root / "data", max_seq_length=32, progress=False)
    run = pretrain(root / "data", root / "run", preset="tiny", max_steps=3, overrides=SMALL_RUN, progress=False)
    disc, gen = export_run(run, root / "hf")
    shutil.copytree(disc, root / "my-electra-discriminator")
    shutil.copytree(gen, root / "my-electra-generator")
    build_dataset([text], root / "my-electra-discriminator", root / "data2", max_seq_length=32, progress=False)
    return root


def test_init_from_the_two_hub_folders_continues_both_networks(hub, tmp_path):
    disc, gen = hub / "my-electra-discriminator", hub / "my-electra-generator"
    run = pretrain(hub / "data2", tmp_path / "cont", preset="tiny", max_steps=1, init=[disc, gen],
                   overrides=["train.learning_rate=1e-12", "train.batch_size=8"], progress=False)
    assert json.loads((run / "run.json").read_text())["init"] == f"{disc} {gen}"
    state = load_file(str(latest_checkpoint(run) / "model.safetensors"))
    for folder, prefix in ((gen, "generator."), (disc, "discriminator.")):
        released = load_file(str(folder / "model.safetensors"))
        for name in ("electra.encoder.layer.0.attention.self.query.weight", "electra.encoder.layer.0.output.dense.bias"):
            assert torch.allclose(state[prefix + name], released[name], atol=1e-6), (prefix, name)


def test_the_two_folders_in_the_wrong_order_are_refused(hub, tmp_path):
    with pytest.raises(UserError, match="a ElectraForMaskedLM, not the discriminator .ElectraForPreTraining.; "
                                        "give --init DISCRIMINATOR GENERATOR in that order"):
        pretrain(hub / "data2", tmp_path / "x", preset="tiny", max_steps=1, progress=False,
                 init=[hub / "my-electra-generator", hub / "my-electra-discriminator"])
    assert not (tmp_path / "x").exists()


def test_a_tokenizer_that_differs_in_one_entry_is_refused_naming_it(hub, tmp_path):
    vocab = (hub / "my-electra-discriminator" / "vocab.txt").read_text().splitlines()
    i = vocab.index("whale")
    vocab[i] = "narwhal"
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    text = tmp_path / "t.txt"
    text.write_text("the narwhal swims in the deep sea\n" * 50)
    build_dataset([text], tmp_path / "tok" / "vocab.txt", tmp_path / "data", max_seq_length=32, progress=False)
    proc = subprocess.run([sys.executable, "-m", "electra", "pretrain", "--preset", "tiny", "--data",
                           str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--init",
                           str(hub / "my-electra-discriminator"), str(hub / "my-electra-generator"), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert f"its tokenizer differs from the --init checkpoint's vocabulary at id {i} ('narwhal' in the data, " \
           f"'whale' in" in proc.stderr and "electra data build --tokenizer" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_the_papers_two_phases_short_then_long_examples_as_two_commands(hub, tmp_path):
    """Phase 1 on short examples, phase 2 on long ones from phase 1's export (toy scale: 16 then 64 tokens;
    the paper's 128 then 512), with the CLI as the README shows it."""
    from electra.cli import main
    text = hub / "corpus.txt"
    for length in (16, 64):
        build_dataset([text], hub / "tok", tmp_path / f"data{length}", max_seq_length=length, progress=False)
    small = ["--set", "model.hidden_size=32", "--set", "model.embedding_size=24", "--set", "model.intermediate_size=64",
             "--set", "model.num_hidden_layers=2", "--set", "train.batch_size=8", "--quiet"]
    assert main(["pretrain", "--preset", "tiny", "--data", str(tmp_path / "data16"), "--out", str(tmp_path / "p1"),
                 "--max-steps", "3", *small]) == 0
    assert main(["export", str(tmp_path / "p1"), "--out", str(tmp_path / "p1" / "hf")]) == 0
    assert main(["pretrain", "--preset", "tiny", "--init", str(tmp_path / "p1" / "hf"), "--data",
                 str(tmp_path / "data64"), "--out", str(tmp_path / "p2"), "--max-steps", "3",
                 "--set", "train.batch_size=8", "--set", "train.learning_rate=1e-12", "--quiet"]) == 0
    from electra.data.loader import PretrainingData
    start = json.loads((tmp_path / "p2" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["train_examples"] == PretrainingData(tmp_path / "data64").num_examples("train")
    config = json.loads((tmp_path / "p2" / "config.json").read_text())
    assert config["model"]["hidden_size"] == 32  # the architecture came from phase 1's export
    phase1 = load_file(str(tmp_path / "p1" / "hf" / "discriminator" / "model.safetensors"))
    phase2 = load_file(str(latest_checkpoint(tmp_path / "p2") / "model.safetensors"))
    # the positions phase 1 trained (its examples had 16 tokens) carry over; phase 2 trains the rest
    name = "electra.embeddings.position_embeddings.weight"
    assert torch.allclose(phase2["discriminator." + name][:16], phase1[name][:16], atol=1e-6)
    assert json.loads((tmp_path / "p2" / "run.json").read_text())["init"] == str(tmp_path / "p1" / "hf")
