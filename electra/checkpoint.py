"""Checkpoints (atomic, complete, exact resume) and Hugging Face export / import.

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

Because parameter names equal transformers' ELECTRA names, export is a prefix split:
``discriminator.X`` -> discriminator/model.safetensors ``X``, ``generator.X`` likewise.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from electra.config import ModelConfig, PretrainConfig
from electra.errors import UserError
from electra.hashing import sha256_file
from electra.model_card import write_pretraining_card
from electra.model import ElectraForMaskedLM, ElectraForPreTraining
from electra.objective_variants import exportable, load_network_state, merge_gdes_state

CHECKPOINT_PREFIX = "step-"


# --------------------------------------------------------------------------- atomic folders

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


class AtomicDir:
    """Write a folder under a temporary name, fsync it, then rename it into place.

    Readers see either the old folder or the complete new one, never a half-written one.
    """

    def __init__(self, final: Path):
        self.final = Path(final)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.tmp-", dir=self.final.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        _fsync_tree(self.tmp)
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.final, old)
            os.replace(self.tmp, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.final)
        _fsync_dir(self.final.parent)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- training checkpoints

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
        return {"checkpoint": str(best["checkpoint"]), "step": int(best["step"]), "loss": float(best["loss"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
    except OSError as e:
        # AtomicDir removed the partial folder; every earlier checkpoint is untouched.
        previous = [c.name for c in checkpoint_dirs(run_dir) if c != final]
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
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
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer if isinstance(optimizer, dict) else optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        write_json(tmp / "state.json", state)
        write_json(tmp / MANIFEST, {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                                    for name in CHECKPOINT_FILES})


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    device: torch.device) -> dict[str, Any]:
    """Restore model (and optimiser, RNG) from a checkpoint folder; returns its state.json."""
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False, device=str(device))
        if unexpected or [k for k in missing if not k.startswith("generator.")]:
            raise ValueError(f"weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
        if optimizer is not None:
            optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
        rng = torch.load(path / "rng.pt", weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return json.loads((path / "state.json").read_text())
    except (OSError, ValueError, RuntimeError, SafetensorError, KeyError) as e:
        raise UserError(f"{path}: cannot load checkpoint ({str(e).splitlines()[0]})") from None


# --------------------------------------------------------------------------- Hugging Face folders

def _split_state(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    # Clone so that tied/shared tensors become separate storage, as safetensors requires.
    return {k[len(prefix):]: v.detach().cpu().clone().contiguous()
            for k, v in model.state_dict().items() if k.startswith(prefix)}


def save_hf_model(model: ElectraForPreTraining | ElectraForMaskedLM, out_dir: Path, tokenizer_dir: Path | None) -> None:
    """One transformers-loadable folder: config.json, model.safetensors and the tokenizer files."""
    arch = type(model).__name__
    with AtomicDir(Path(out_dir)) as tmp:
        write_json(tmp / "config.json", model.config.to_hf_dict(arch))
        save_file(_split_state(model, ""), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer_dir is not None:
            for f in Path(tokenizer_dir).iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)


def export_run(run_dir: Path, out_dir: Path, checkpoint: Path | None = None) -> tuple[Path, Path | None]:
    """Write ``out_dir/discriminator`` and ``out_dir/generator`` from a run's newest checkpoint, each with a
    model card (README.md, electra/model_card.py) and the run's curves.

    ``discriminator/`` is the discriminator-sized network: an ElectraForPreTraining, or for the MLM
    objectives an ElectraForMaskedLM (All-Tokens MLM's copy head is left out); with ``gdes`` sharing its
    embeddings are the effective ones (generator's + delta). The ``mlm`` objective has no generator:
    then only ``discriminator/`` is written and the second value is None.
    """
    from electra.objectives import ElectraPretrainer  # local: objectives imports this module's neighbours

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    ckpt = checkpoint or latest_checkpoint(run_dir)
    model = ElectraPretrainer(cfg.model, cfg.generator_model_config(), cfg.train.objective, cfg.generator.sharing)
    step = load_checkpoint(ckpt, model, None, torch.device("cpu"))["step"]
    tok = run_dir / "tokenizer"
    disc_dir, gen_dir = Path(out_dir) / "discriminator", Path(out_dir) / "generator"
    for d in (disc_dir, gen_dir):  # replace an earlier export, never anything else
        if d.exists() and any(d.iterdir()) and not _is_electra_folder(d):
            raise UserError(f"{d}: exists and is not an ELECTRA export; choose another --out")
    save_hf_model(exportable(model.discriminator), disc_dir, tok if tok.is_dir() else None)
    write_pretraining_card(run_dir, disc_dir, "discriminator", step, cfg.to_dict())
    if model.generator is None:
        return disc_dir, None
    save_hf_model(model.generator, gen_dir, tok if tok.is_dir() else None)
    write_pretraining_card(run_dir, gen_dir, "generator", step, cfg.to_dict())
    return disc_dir, gen_dir


def _is_electra_folder(folder: Path) -> bool:
    try:
        config = read_json_file(folder / "config.json")
    except UserError:
        return False
    return isinstance(config, dict) and config.get("model_type") == "electra"


def read_json_file(path: Path) -> Any:
    """The JSON value in ``path`` (UTF-8, -16 or -32, as JSON allows); a UserError naming it if unreadable."""
    try:
        return json.loads(path.read_bytes())
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    except RecursionError:
        raise UserError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise UserError(f"{path}: not valid JSON ({' '.join(str(e).split())[:200]})") from None


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


def load_hf_state(folder: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Config and weights of a local transformers ELECTRA folder (safetensors, or a weights-only .bin)."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{folder}: no config.json; expected a transformers ELECTRA folder")
    raw = read_json_file(cfg_path)
    cfg = ModelConfig.from_hf_dict(raw, str(cfg_path))
    if (folder / "model.safetensors").is_file():
        try:
            state = load_file(str(folder / "model.safetensors"))
        except (SafetensorError, OSError) as e:
            raise UserError(f"{folder / 'model.safetensors'}: unreadable ({e})") from None
    elif (folder / "pytorch_model.bin").is_file():
        # Never unpickle arbitrary objects from a file a user was sent: tensors only.
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
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


InitSource = "Path | tuple[Path, Path]"  # an export folder, one discriminator folder, or (discriminator, generator)


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
            found = (read_json_file(path / "config.json").get("architectures") or [arch])[0]
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


# --------------------------------------------------------------------------- fine-tuning sources

def load_encoder_source(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Path]:
    """The discriminator of MODEL for fine-tuning: (config, ``electra.*`` encoder weights, tokenizer folder).

    MODEL is a pre-training run (its newest checkpoint), the ``--out`` of ``electra export``, or any local
    transformers ELECTRA folder (ElectraForPreTraining, ElectraModel or a fine-tuned ELECTRA: only the
    encoder is kept; a task head starts fresh).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such folder; give a pre-training run, an export or a transformers ELECTRA folder")
    if (path / "config.json").is_file() and (path / "checkpoints").is_dir():
        cfg = load_run_config(path)
        ckpt = latest_checkpoint(path)
        try:
            state = load_file(str(ckpt / "model.safetensors"))
        except (SafetensorError, OSError) as e:
            raise UserError(f"{ckpt}: unreadable weights ({e})") from None
        if cfg.generator.sharing == "gdes":
            state = merge_gdes_state(state)  # the discriminator's effective embeddings
        encoder = {k.removeprefix("discriminator."): v for k, v in state.items()
                   if k.startswith("discriminator.electra.")}
        return cfg.model, encoder, path / "tokenizer"
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
