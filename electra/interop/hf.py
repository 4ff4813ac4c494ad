"""Hugging Face transformers folders <-> (config, state dict): write one, read one, find the two folders of a
discriminator/generator pair, and take the encoder out of one for fine-tuning. Nothing here knows pre-training:
turning a run into these folders, and starting a run from them (``--init``), is electra/pretraining/export.py.

Because parameter names equal transformers' ELECTRA names, a network is written as it is: ``X`` in the model is
``X`` in model.safetensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from electra.config import ModelConfig
from electra.errors import UserError
from electra.model import ElectraForMaskedLM, ElectraForPreTraining
from electra.runtime.checkpoint import load_torch_file
from electra.runtime.files import (OWNER_MARKER, AtomicDir, copy_file, load_safetensors, read_json_object,
                                   save_safetensors, write_json)


def _split_state(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    # Clone so that tied/shared tensors become separate storage, as safetensors requires.
    return {k[len(prefix):]: v.detach().cpu().clone().contiguous()
            for k, v in model.state_dict().items() if k.startswith(prefix)}


def save_hf_model(model: ElectraForPreTraining | ElectraForMaskedLM, out_dir: Path, tokenizer_dir: Path | None) -> None:
    """One transformers-loadable folder: config.json, model.safetensors and the tokenizer files."""
    with AtomicDir(Path(out_dir)) as tmp:
        write_hf_files(model, tmp, tokenizer_dir)


def write_hf_files(model: ElectraForPreTraining | ElectraForMaskedLM, folder: Path, tokenizer_dir: Path | None) -> None:
    """config.json, model.safetensors and the tokenizer files into ``folder`` (each file atomically)."""
    arch = type(model).__name__
    write_json(folder / "config.json", model.config.to_hf_dict(arch))
    save_safetensors(folder / "model.safetensors", _split_state(model, ""), metadata={"format": "pt"})
    if tokenizer_dir is not None:
        for f in sorted(Path(tokenizer_dir).iterdir()):
            if f.is_file() and f.name != OWNER_MARKER:
                copy_file(f, folder / f.name)


def load_hf_state(folder: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Config and weights of a local transformers ELECTRA folder (safetensors, or a weights-only .bin)."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{folder}: no config.json; expected a transformers ELECTRA folder")
    raw = read_json_object(cfg_path, "a transformers config (a JSON object)")
    cfg = ModelConfig.from_hf_dict(raw, str(cfg_path))
    if (folder / "model.safetensors").is_file():
        state = load_safetensors(folder / "model.safetensors")
    elif (folder / "pytorch_model.bin").is_file():
        # Never unpickle arbitrary objects from a file a user was sent: tensors only.
        state = load_torch_file(folder / "pytorch_model.bin")
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in state.items()):
            raise UserError(f"{folder / 'pytorch_model.bin'}: not a state dict (names to tensors); is it a "
                            f"transformers weights file?")
    else:
        raise UserError(f"{folder}: no model.safetensors or pytorch_model.bin")
    return cfg, state, raw


def load_hf_model(folder: Path, kind: str = "discriminator") -> ElectraForPreTraining | ElectraForMaskedLM:
    """Load a transformers ElectraForPreTraining ("discriminator") or ElectraForMaskedLM ("generator") folder."""
    cfg, state, _ = load_hf_state(folder)
    model = ElectraForPreTraining(cfg) if kind == "discriminator" else ElectraForMaskedLM(cfg)
    state = {k.removeprefix("discriminator.").removeprefix("generator."): v for k, v in state.items()}
    if kind == "generator" and "generator_lm_head.weight" not in state:
        state["generator_lm_head.weight"] = state["electra.embeddings.word_embeddings.weight"]
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise UserError(f"{folder}: weights lack {missing[0]} (and {len(missing) - 1} more); is it an ELECTRA {kind}?")
    bad = [k for k in own if state[k].shape != own[k].shape]
    if bad:
        raise UserError(f"{folder}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, config says {tuple(own[bad[0]].shape)}")
    model.load_state_dict({k: state[k] for k in own})
    if kind == "generator":
        model.tie_weights()
    return model


def hf_pair_folders(folder) -> tuple[Path, Path | None]:
    """(discriminator, generator or None) folders of an export (or a single discriminator folder), or of a
    (discriminator, generator) pair of folders laid out as the hub's ``...-discriminator`` and ``...-generator``
    downloads."""
    if isinstance(folder, (tuple, list)):
        disc, gen = map(Path, folder)
        for path, kind, arch in ((disc, "discriminator", "ElectraForPreTraining"),
                                 (gen, "generator", "ElectraForMaskedLM")):
            if not (path / "config.json").is_file():
                raise UserError(f"{path}: no config.json; give the {kind}'s transformers folder")
            found = (read_json_object(path / "config.json", "a transformers config (a JSON object)")
                     .get("architectures") or [arch])[0]
            if found != arch:
                raise UserError(f"{path}: a {found}, not the {kind} ({arch}); give --init DISCRIMINATOR GENERATOR "
                                f"in that order")
        return disc, gen
    folder = Path(folder)
    if (folder / "discriminator" / "config.json").is_file():
        gen = folder / "generator"
        return folder / "discriminator", (gen if (gen / "config.json").is_file() else None)
    if (folder / "config.json").is_file():
        return folder, None
    raise UserError(f"{folder}: no config.json and no discriminator/ folder; give a transformers ELECTRA folder "
                    f"or the --out of `electra export`")


def hf_encoder(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Path]:
    """The discriminator encoder of a transformers folder (an ``electra export`` --out, ElectraForPreTraining,
    ElectraModel or a fine-tuned ELECTRA): (config, ``electra.*`` weights, the folder, which holds the tokenizer).
    A task head is left out: fine-tuning starts its own."""
    folder, _ = hf_pair_folders(path)
    cfg, state, _ = load_hf_state(folder)
    encoder = {}
    for k, v in state.items():
        k = k.removeprefix("discriminator.")
        if k.startswith("electra."):
            encoder[k] = v
        elif k.startswith(("embeddings.", "encoder.", "embeddings_project.")):  # a bare ElectraModel
            encoder["electra." + k] = v
    if not encoder:
        raise UserError(f"{folder}: no ELECTRA encoder weights (no 'electra.*' tensors)")
    return cfg, encoder, folder
