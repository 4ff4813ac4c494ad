"""A pre-training run to and from transformers folders: ``electra export`` (a run's checkpoint into a
discriminator and a generator folder, with model cards), ``--init`` (a run started from such folders), and the
discriminator encoder of a run or a folder for fine-tuning. The folders themselves (config and weights in
transformers' layout) are electra/interop/hf.py's; this module adds what only pre-training knows: the
objective's networks, weight sharing and GDES embeddings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from electra.config import ModelConfig, PretrainConfig
from electra.errors import UserError
from electra.interop.hf import hf_encoder, hf_pair_folders, load_hf_model, load_hf_state, write_hf_files
from electra.interop.model_card import write_pretraining_card
from electra.model import ElectraForPreTraining
from electra.pretraining.objective import ElectraPretrainer
from electra.pretraining.variants import exportable, load_network_state, merge_gdes_state
from electra.runtime.checkpoint import latest_checkpoint, load_checkpoint, load_run_config
from electra.runtime.files import (AtomicDir, WriteFailed, claim_output_folder, load_safetensors, mark_owned,
                                   replace_folder)


def export_run(run_dir: Path, out_dir: Path, checkpoint: Path | None = None,
               overwrite: bool = False) -> tuple[Path, Path | None]:
    """Write ``out_dir/discriminator`` and ``out_dir/generator`` from a run's newest checkpoint, each with a
    model card (README.md, electra/model_card.py) and the run's curves.

    ``discriminator/`` is the discriminator-sized network: an ElectraForPreTraining, or for the MLM
    objectives an ElectraForMaskedLM (All-Tokens MLM's copy head is left out); with ``gdes`` sharing its
    embeddings are the effective ones (generator's + delta). The ``mlm`` objective has no generator:
    then only ``discriminator/`` is written and the second value is None.

    Only an earlier export is replaced (its folders carry the toolkit's marker), never a folder someone else
    wrote, unless ``overwrite``. Both folders are built beside their places and renamed in at the end: a
    failure (a full disk) leaves the earlier export, if any, as it was.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    ckpt = checkpoint or latest_checkpoint(run_dir)
    disc_dir, gen_dir = Path(out_dir) / "discriminator", Path(out_dir) / "generator"
    for d in (disc_dir, gen_dir):  # replace an earlier export, never anything else
        claim_output_folder(d, "--out", overwrite, command="electra export")
    model = ElectraPretrainer(cfg.model, cfg.generator_model_config(), cfg.train.objective, cfg.generator.sharing)
    step = load_checkpoint(ckpt, model, None, torch.device("cpu"))["step"]
    tok = run_dir / "tokenizer"
    networks = [(disc_dir, exportable(model.discriminator), "discriminator")]
    if model.generator is not None:
        networks.append((gen_dir, model.generator, "generator"))
    built: list[tuple[Path, Path]] = []
    try:
        for final, network, kind in networks:
            staged = final.with_name(f".{final.name}.export")
            with AtomicDir(staged) as tmp:
                write_hf_files(network, tmp, tok if tok.is_dir() else None)
                write_pretraining_card(run_dir, tmp, kind, step, cfg.to_dict())
                mark_owned(tmp, "electra export")
            built.append((staged, final))
        for staged, final in built:
            replace_folder(staged, final)
    except OSError as e:
        raise WriteFailed(Path(out_dir), e) from None
    finally:
        for staged, _ in built:
            if staged.exists():
                shutil.rmtree(staged, ignore_errors=True)
    return disc_dir, (gen_dir if model.generator is not None else None)


def check_init_vocabulary(disc_dir: Path, tokenizer_dir: Path, data_dir: Path) -> None:
    """The data must be tokenized with the checkpoint's own vocabulary, token for token: a word embedding means
    its token. A UserError names the first id where they differ (nothing to compare without tokenizer files)."""
    from electra.data.tokenizer import load_tokenizer  # the Rust library only when needed

    has_tokenizer = (disc_dir / "vocab.txt").is_file() or (disc_dir / "tokenizer.json").is_file()
    if not has_tokenizer or not Path(tokenizer_dir).is_dir():
        return
    ours, theirs = load_tokenizer(disc_dir).get_vocab(), load_tokenizer(tokenizer_dir).get_vocab()
    ckpt, data = (sorted(v, key=v.get) for v in (ours, theirs))
    for i, (a, b) in enumerate(zip(ckpt, data)):
        if a != b:
            raise UserError(f"{data_dir}: its tokenizer differs from the --init checkpoint's vocabulary at id {i} "
                            f"({b!r} in the data, {a!r} in {disc_dir}); build the data with "
                            f"`electra data build --tokenizer {disc_dir}`")
    if len(ckpt) != len(data):
        raise UserError(f"{data_dir}: its tokenizer has {len(data)} entries and the --init checkpoint's vocabulary "
                        f"{len(ckpt)} ({disc_dir}); build the data with `electra data build --tokenizer {disc_dir}`")


def init_config_from_hf(cfg: PretrainConfig, folder) -> PretrainConfig:
    """Take the architecture from a transformers folder (discriminator, and generator if there is one)."""
    disc_dir, gen_dir = hf_pair_folders(folder)
    cfg.model = load_hf_state(disc_dir)[0]
    if gen_dir is not None:
        gen = load_hf_state(gen_dir)[0]
        cfg.generator.hidden_fraction = gen.hidden_size / cfg.model.hidden_size
        cfg.generator.layers_fraction = gen.num_hidden_layers / cfg.model.num_hidden_layers
        derived = cfg.generator_model_config()
        shape = ("hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers", "embedding_size")
        if any(getattr(derived, k) != getattr(gen, k) for k in shape):
            raise UserError(f"{gen_dir}: generator shape {[getattr(gen, k) for k in shape]} is not a scaled copy of the "
                            f"discriminator's; only proportionally scaled generators are supported")
    return cfg


def load_pretrainer_from_hf(model: torch.nn.Module, folder) -> None:
    """Copy transformers weights into an ElectraPretrainer; without a generator folder it keeps its fresh one."""
    disc_dir, gen_dir = hf_pair_folders(folder)
    if type(model.discriminator) is not ElectraForPreTraining or not _embeddings_shared(model):
        # Another objective or sharing: the encoders by name, heads where the weights have them. The
        # generator goes first: a GDES discriminator table is stored as a delta from the generator's.
        if gen_dir is not None and model.generator is not None:
            load_network_state(model.generator, load_hf_state(gen_dir)[1], str(gen_dir))
        load_network_state(model.discriminator, load_hf_state(disc_dir)[1], str(disc_dir))
        return
    model.discriminator.load_state_dict(load_hf_model(disc_dir, "discriminator").state_dict())
    if gen_dir is not None:
        gen_state = load_hf_model(gen_dir, "generator").state_dict()
        # Shared embeddings come from the discriminator (they are one tensor in an export anyway).
        own = {k: v for k, v in gen_state.items() if not k.startswith("electra.embeddings.") and k != "generator_lm_head.weight"}
        missing, unexpected = model.generator.load_state_dict(own, strict=False)
        assert not unexpected and all(k.startswith("electra.embeddings.") or k == "generator_lm_head.weight" for k in missing)


def _embeddings_shared(model: torch.nn.Module) -> bool:
    return model.generator is not None and model.generator.electra.embeddings is model.discriminator.electra.embeddings \
        and model.generator.electra is not model.discriminator.electra


def load_encoder_source(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Path]:
    """The discriminator of MODEL for fine-tuning: (config, ``electra.*`` encoder weights, tokenizer folder).

    MODEL is a pre-training run (its newest checkpoint), the ``--out`` of ``electra export``, or any local
    transformers ELECTRA folder (ElectraForPreTraining, ElectraModel or a fine-tuned ELECTRA: only the
    encoder is kept; a task head starts fresh).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such folder; give a pre-training run, an export or a transformers ELECTRA folder")
    if not ((path / "config.json").is_file() and (path / "checkpoints").is_dir()):
        return hf_encoder(path)
    cfg = load_run_config(path)
    state = load_safetensors(latest_checkpoint(path) / "model.safetensors")
    if cfg.generator.sharing == "gdes":
        state = merge_gdes_state(state)  # the discriminator's effective embeddings
    encoder = {k.removeprefix("discriminator."): v for k, v in state.items() if k.startswith("discriminator.electra.")}
    return cfg.model, encoder, path / "tokenizer"
