"""Run checkpoints: atomic, complete, exact resume.

A run folder::

    runs/x/config.json            the PretrainConfig
    runs/x/run.json               data folder, tokenizer, library versions
    runs/x/metrics.jsonl          one JSON record per log / eval event
    runs/x/tokenizer/             the tokenizer the data was built with
    runs/x/checkpoints/step-00001000/
        model.safetensors         generator + discriminator (shared tensors stored once)
        optimizer.pt              AdamW state (tensors and numbers only: loads with weights_only=True)
        rng.pt                    torch CPU/CUDA generator states (pre-training reseeds dropout every step
                                  from (seed, step, rank), so resume does not need them; still written)
        state.json                step, data position, tokens seen
        manifest.json             every file's size and SHA-256, checked before a resume

Hugging Face export and import live in electra/interop/hf.py.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model

from electra.config import PretrainConfig
from electra.errors import UserError
from electra.runtime.files import (AtomicDir, WriteFailed, read_json_file, save_safetensors, save_torch, sha256_file,
                                   write_json)

CHECKPOINT_PREFIX = "step-"


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX))


CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "rng.pt", "state.json")


MANIFEST = "manifest.json"


BEST = "best.json"


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """``checkpoints/best.json``: the checkpoint with the best held-out loss so far, its step and loss."""
    try:
        best = json.loads((Path(run_dir) / "checkpoints" / BEST).read_text())
        best = {"checkpoint": str(best["checkpoint"]), "step": int(best["step"]), "loss": float(best["loss"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # Only a checkpoint of this run: a name like "../../other/checkpoints/step-1" is not one.
    if Path(best["checkpoint"]).name != best["checkpoint"] or not best["checkpoint"].startswith(CHECKPOINT_PREFIX):
        print(f"warning: {Path(run_dir) / 'checkpoints' / BEST}: names {best['checkpoint']!r}, which is not one of "
              f"this run's checkpoints; ignored", file=sys.stderr)
        return None
    return best


def best_checkpoint_name(run_dir: Path) -> str | None:
    best = read_best(run_dir)
    return best["checkpoint"] if best else None


def record_best(run_dir: Path, checkpoint: Path, step: int, loss: float) -> None:
    (Path(run_dir) / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_json(Path(run_dir) / "checkpoints" / BEST, {"checkpoint": checkpoint.name, "step": step, "loss": loss})


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint folder cannot be trusted (a missing, truncated or altered file), or None if it is whole.

    Checkpoints written before manifests existed are accepted when all their files are present."""
    path = Path(path)
    missing = [n for n in CHECKPOINT_FILES if not (path / n).is_file()]
    if missing:
        return f"{missing[0]} is missing"
    if not (path / MANIFEST).is_file():
        return None
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        for name, entry in manifest.items():
            size = (path / name).stat().st_size
            if size != entry["bytes"]:
                return f"{name} has {size} bytes, the manifest says {entry['bytes']} (truncated?)"
            if sha256_file(path / name) != entry["sha256"]:
                return f"{name} does not match its checksum (corrupted)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"unreadable manifest ({e})"
    return None


def latest_good_checkpoint(run_dir: Path, report=None) -> Path | None:
    """The newest checkpoint that passes ``checkpoint_problem``; each newer, broken one is reported (one line
    each, to stderr by default) and skipped, never deleted: a user may want to look at it."""
    for ckpt in reversed(checkpoint_dirs(run_dir)):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        message = f"warning: {ckpt}: {problem}; using the previous checkpoint"
        (report or (lambda m: print(m, file=sys.stderr)))(message)
    return None


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | dict[str, Any],
                    state: dict[str, Any], keep: int) -> Path:
    """Write ``checkpoints/step-N`` atomically and keep the newest ``keep``. ``optimizer``: the optimiser or its
    state dict (a sharded run's, gathered by distributed.full_state)."""
    final = Path(run_dir) / "checkpoints" / f"{CHECKPOINT_PREFIX}{state['step']:08d}"
    for stale in final.parent.glob(f".{CHECKPOINT_PREFIX}*"):  # left by a process killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    try:
        _write_checkpoint(final, model, optimizer, state)
    except WriteFailed as e:
        # AtomicDir removed the partial folder; every earlier checkpoint is untouched.
        previous = [c.name for c in checkpoint_dirs(run_dir) if c != final]
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        why = e.reason
        raise UserError(f"{final}: could not save the checkpoint ({why}); {kept}; free space (or fix the cause) "
                        f"and continue with --resume") from None
    best = best_checkpoint_name(run_dir)
    for old in checkpoint_dirs(run_dir)[:-keep]:
        if old.name != best:  # the best held-out checkpoint is kept besides the newest ``keep``
            shutil.rmtree(old, ignore_errors=True)
    return final


def _write_checkpoint(final: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | dict[str, Any],
                      state: dict[str, Any]) -> None:
    with AtomicDir(final) as tmp:
        save_safetensors(tmp / "model.safetensors", *unique_tensors(model))
        save_torch(tmp / "optimizer.pt", optimizer if isinstance(optimizer, dict) else optimizer.state_dict())
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        save_torch(tmp / "rng.pt", rng)
        write_json(tmp / "state.json", state)
        write_json(tmp / MANIFEST, {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                                    for name in CHECKPOINT_FILES})


def unique_tensors(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The model's state with each shared tensor (tied embeddings, a shared encoder) stored once, under its first
    name, as safetensors' ``save_model`` does; the metadata maps every dropped name to the kept one.
    ``load_model`` restores the others from the sharing the model itself declares."""
    kept: dict[tuple, str] = {}
    tensors, metadata = {}, {}
    for name, t in model.state_dict().items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())
        if key in kept:
            metadata[name] = kept[key]
            continue
        kept[key] = name
        tensors[name] = t.detach().contiguous()
    return tensors, metadata


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    device: torch.device) -> dict[str, Any]:
    """Restore model (and optimiser, RNG) from a checkpoint folder; returns its state.json. Any file that does
    not load (damaged, or from a run of another shape) is one line naming it."""
    path = Path(path)
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False, device=str(device))
    except (OSError, SafetensorError, ValueError, RuntimeError) as e:  # RuntimeError: a tensor of another shape
        raise UserError(f"{path / 'model.safetensors'}: cannot load the weights ({_first_line(e)})") from None
    missing = sorted(k for k in missing if not k.startswith("generator."))
    if unexpected or missing:
        raise UserError(f"{path / 'model.safetensors'}: the weights do not match the run's model (missing "
                        f"{missing[:3]}, unexpected {sorted(unexpected)[:3]}); was config.json changed?")
    if optimizer is not None:
        try:
            optimizer.load_state_dict(load_torch_file(path / "optimizer.pt", device))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            raise UserError(f"{path / 'optimizer.pt'}: not this run's optimiser state ({_first_line(e)})") from None
    rng = load_torch_file(path / "rng.pt")
    try:
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    except (KeyError, TypeError, IndexError, RuntimeError) as e:
        raise UserError(f"{path / 'rng.pt'}: not a random-number state ({_first_line(e)})") from None
    state = read_json_file(path / "state.json")
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise UserError(f"{path / 'state.json'}: not a checkpoint state (no integer 'step')")
    return state


def load_torch_file(path: Path, device: torch.device | str = "cpu") -> Any:
    """A ``torch.save`` file of tensors and numbers (``weights_only``: nothing else is ever unpickled); a damaged
    or foreign file is one line naming it."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError, TypeError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: cannot load it ({_first_line(e)}); the file is damaged or not what it should be") \
            from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return " ".join(text[0].split())[:200] if text else type(e).__name__


def load_run_config(run_dir: Path) -> PretrainConfig:
    """A run's config.json, validated: any problem is a UserError naming the file."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a pre-training run (no config.json); give the --out folder of `electra pretrain`")
    raw = read_json_file(path)
    try:
        cfg = PretrainConfig.from_dict(raw)
        cfg.validate()
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return cfg


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest intact checkpoint (broken newer ones are reported and skipped)."""
    if not checkpoint_dirs(run_dir):
        raise UserError(f"{run_dir}: the run has no checkpoint yet; train it first (checkpoints are saved every train.save_every steps and at the end)")
    ckpt = latest_good_checkpoint(run_dir)
    if ckpt is None:
        raise UserError(f"{run_dir}: every checkpoint is damaged (see the warnings above); the run cannot be continued")
    return ckpt


def chosen_checkpoint(run_dir: Path, step: int | None = None, best: bool = False) -> Path:
    """The checkpoint a command names: ``step`` (one of the kept ones), the best held-out one, or the newest."""
    run_dir = Path(run_dir)
    load_run_config(run_dir)  # a folder that is not a run is named as such, before any talk of checkpoints
    if best:
        name = best_checkpoint_name(run_dir)
        if name is None or not (run_dir / "checkpoints" / name).is_dir():
            raise UserError(f"{run_dir}: no best held-out checkpoint recorded (checkpoints/best.json); "
                            f"leave out --best for the newest")
        ckpt = run_dir / "checkpoints" / name
    elif step is not None:
        ckpt = run_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:08d}"
        if not ckpt.is_dir():
            kept = ", ".join(str(int(c.name.removeprefix(CHECKPOINT_PREFIX))) for c in checkpoint_dirs(run_dir))
            raise UserError(f"{run_dir}: no checkpoint at step {step}; kept: {kept or 'none'}")
    else:
        return latest_checkpoint(run_dir)
    problem = checkpoint_problem(ckpt)
    if problem is not None:
        raise UserError(f"{ckpt}: {problem}; choose another checkpoint")
    return ckpt
