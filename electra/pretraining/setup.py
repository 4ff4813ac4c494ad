"""Everything a pre-training run builds before its first step, gathered in one ``Run`` by ``build_run``: the run
folder and config (new, resumed or from transformers weights), the device and the processes, the model, the
function that runs its step and the optimiser, the selection function, the batches (stream -> windows -> mask),
the metrics log and the health checks; and what the run keeps between steps besides the weights: its state, the
training algorithm's phase and the adversarial reward baseline."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from electra.config import PretrainConfig, TrainConfig, apply_overrides, local_init_frequencies, preset_config
from electra.data.loader import PretrainingData, token_distributions, unigram_distribution
from electra.errors import UserError
from electra.interop.hf import hf_pair_folders
from electra.pretraining.algorithms import RewardBaseline, load_algorithm_state
from electra.pretraining.batches import BatchStream, Masking, Selector, TrainingBatches
from electra.pretraining.export import check_init_vocabulary, init_config_from_hf, load_pretrainer_from_hf
from electra.pretraining.flops import steps_for_budget
from electra.pretraining.health import HealthMonitor
from electra.pretraining.local_init import init_local_attention
from electra.pretraining.objective import ElectraPretrainer
from electra.pretraining.word_masking import continuation_flags, make_selector
from electra.runtime.checkpoint import (checkpoint_dirs, latest_good_checkpoint, load_checkpoint, load_run_config,
                                        load_torch_file)
from electra.runtime.device import autocast_for, fused_adamw
from electra.runtime.distributed import Dist, broadcast_object, load_full_optimizer_state, parallelize, run_device
from electra.runtime.files import AtomicDir, claim_output_folder, copy_tree, mark_owned, write_json
from electra.runtime.loggers import ScalarSinks
from electra.runtime.metrics_log import MetricsLog
from electra.version import __version__


def _fresh_state() -> dict[str, Any]:
    return {"step": 0, "position": 0, "tokens_seen": 0}


@dataclass
class Run:
    """One pre-training run, built once (``build_run``): what the loop (pretrain.py) and ``train_step`` (step.py)
    read, instead of long argument lists. A benchmark builds the step's part alone (the fields without
    defaults); the loop's parts then stay empty."""

    cfg: PretrainConfig
    model: ElectraPretrainer
    step_fn: Any                    # runs the step: the model, DDP- or FSDP-wrapped, compiled with train.compile
    optimizer: torch.optim.AdamW
    device: torch.device
    autocast: Callable[[], Any] = contextlib.nullcontext  # train.precision's autocast context
    d: Dist = field(default_factory=Dist)  # the processes (one, or torchrun's)
    accumulation: int = 1           # micro-batches per rank per step
    state: dict[str, Any] = field(default_factory=_fresh_state)  # step, data position, tokens seen
    phase: str = "joint"            # the training algorithm's phase of the current step (train_step sets it)
    reward_baseline: RewardBaseline | None = None  # adversarial: made by __post_init__, kept in state.json
    # The loop's parts.
    out: Path | None = None
    data: PretrainingData | None = None
    batches: TrainingBatches | None = None  # stream -> windows -> mask: this rank's share of each global batch
    masking: Masking | None = None     # the masking policy (selection, corruption, the hybrid's noise)
    word_boundaries: bool = False      # selection knows WordPiece words
    distributions: dict[str, torch.Tensor] | None = None  # the data's token distributions (loader.py), for
    # the hybrid objective's noise and the held-out yardstick; None without a binary discriminator
    health: HealthMonitor | None = None
    log: MetricsLog | None = None      # rank 0's metrics.jsonl and scalar sinks
    sharded: bool = False              # FSDP
    plain: Any = None                  # FSDP: rank 0's unsharded model that the weights are gathered into to save
    resumed: bool = False

    def __post_init__(self):
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]  # what clipping sees
        if self.cfg.train.algorithm == "adversarial" and self.reward_baseline is None:
            self.reward_baseline = RewardBaseline(device=self.device)
            load_algorithm_state(self.reward_baseline, self.state)  # a resumed run's, from its state.json

    @property
    def step(self) -> int:
        """The optimiser step about to be made (0-based): the number made so far."""
        return self.state["step"]

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()
        if self.log is not None:
            self.log.close()


def build_run(d: Dist, data_dir: str | Path, out: str | Path, preset: str, max_steps: int | None = None,
              overrides: list[str] | None = None, resume: bool = False, init=None, recipe: str | None = None) -> Run:
    """The run of ``electra pretrain``: its folder created or reopened (prepare_run), and everything its loop
    reads. Under torchrun every process builds its own; rank 0 alone writes."""
    data = PretrainingData(data_dir)
    out = Path(out)
    init = init_source(init, resume)
    how = dict(preset=preset, overrides=overrides or [], max_steps=max_steps, resume=resume, init=init, recipe=recipe)
    cfg, ckpt = prepare_run_everywhere(d, data, out, **how) if d.enabled else prepare_run(data, out, **how)
    t = cfg.train
    accumulation = check_world(t, d)
    device = run_device(t.device, d)
    select, word_boundaries = build_selector(cfg, tokenizer_for(data, out), device)
    sharded = d.enabled and t.parallel == "fsdp"
    model, step_fn, optimizer, plain, state = build_training(cfg, d, device, sharded, ckpt, init)
    if resume and d.is_main:  # the checkpoint has loaded into this config's model: now it may be recorded
        write_json(out / "config.json", cfg.to_dict())
    # The data's token distributions, which the held-out yardstick corrupts with (the same for every run on it).
    distributions = token_distributions(data) if cfg.train.trains_detector() else None
    noise_cdf = noise_for(cfg, distributions, device)  # hybrid has a binary discriminator: distributions exist
    health = health_monitor(cfg, data, distributions)
    # Last, what holds a file or a thread open (Run.close closes them).
    resume_step = state["step"] if resume else None
    log = MetricsLog(out / "metrics.jsonl", resume_step, ScalarSinks(cfg.log, out, resume_step, cfg.to_dict())) \
        if d.is_main else None
    # Every rank reads the same global batches and takes its contiguous slice of each.
    stream = BatchStream(data, t.batch_size, state["position"], t.seed, rank=d.rank, world_size=d.world_size,
                         pin_memory=device.type == "cuda")
    masking = Masking(data.special_ids, t, cfg.model.vocab_size, device, select, noise_cdf)
    return Run(cfg=cfg, model=model, step_fn=step_fn, optimizer=optimizer, device=device,
               autocast=autocast_for(device, t.precision), d=d, accumulation=accumulation, state=state, out=out,
               data=data, batches=TrainingBatches(stream, masking, data.max_seq_length), masking=masking,
               word_boundaries=word_boundaries, distributions=distributions, health=health, log=log, sharded=sharded,
               plain=plain, resumed=resume)


def init_source(init, resume: bool) -> Path | tuple[Path, Path] | None:
    """``--init`` as the run uses it: one folder (an export, or a discriminator), a (discriminator, generator)
    pair of folders, or None; a UserError for a wrong count or together with ``--resume``."""
    if init is not None and resume:
        raise UserError("--init starts a new run from given weights; --resume continues a run: use one of them")
    if isinstance(init, (tuple, list)):
        if len(init) not in (1, 2):
            raise UserError(f"--init takes one folder (an export, or a discriminator) or two (the discriminator's "
                            f"and the generator's), got {len(init)}")
        return Path(init[0]) if len(init) == 1 else (Path(init[0]), Path(init[1]))
    return None if init is None else Path(init)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weight matrices and embeddings; none on biases and LayerNorm.

    Shared parameters (the embeddings) appear once.
    """
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        parameter_groups(model, cfg.weight_decay), lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon, fused=fused_adamw(device),
    )


def noise_for(cfg: PretrainConfig, distributions: dict[str, torch.Tensor] | None,
              device: torch.device) -> torch.Tensor | None:
    """The cumulative distribution (V,) float64 the hybrid objective draws its replacements from (``train.noise``:
    the data's token ``distributions``: the training data's unigram frequencies or uniform over non-special ids);
    None for the other objectives."""
    if cfg.train.objective != "hybrid":
        return None
    return distributions[cfg.train.noise].cumsum(0).to(device)


def build_model(cfg: PretrainConfig) -> ElectraPretrainer:
    """The generator and discriminator of a run, with its objective and weight sharing."""
    t = cfg.train
    # The detector's output bias starts at the log-odds of its share of replaced tokens: about mask_prob for
    # ELECTRA; for the hybrid the selected tokens not shown as [MASK], among the tokens it scores.
    prior = t.mask_prob if t.objective != "hybrid" else \
        t.mask_prob * (1 - t.mask_token_prob) / (1 - t.mask_prob * t.mask_token_prob)
    model = ElectraPretrainer(cfg.model, cfg.generator_model_config(), t.objective, cfg.generator.sharing,
                              replaced_prior=prior)
    if t.local_init:
        init_local_networks(model, cfg)
    return model


def init_local_networks(model: ElectraPretrainer, cfg: PretrainConfig) -> None:
    """train.local_init: the discriminator's layer 0 reads each token's neighbours from the start, and so does a
    separate generator whose heads are wide enough (as wide as the discriminator's: hidden_fraction 1). The
    embedding tables they reshape are the generator's too (shared, or read through GDES), so both use the
    discriminator's frequencies."""
    frequencies, seed = local_init_frequencies(cfg.model), cfg.train.seed
    gen = model.generator
    tables = gen.electra.embeddings if cfg.generator.sharing == "gdes" else None
    init_local_attention(model.discriminator.electra, frequencies, seed=seed, embeddings=tables)
    if gen is None or gen.electra is model.discriminator.electra:
        return
    g = gen.config
    if g.hidden_size // g.num_attention_heads >= 2 * frequencies and g.hidden_size >= g.embedding_size:
        init_local_attention(gen.electra, frequencies, seed=seed)  # re-writes the shared tables identically


def tokenizer_for(data: PretrainingData, out: Path) -> Path:
    """The run's tokenizer folder (copied from the data folder at the start), else the data folder's."""
    return out / "tokenizer" if (out / "tokenizer").is_dir() else data.tokenizer_dir


def check_word_masking(cfg: PretrainConfig, tokenizer_dir: Path) -> None:
    if cfg.train.masking == "whole_word" and not tokenizer_dir.is_dir():
        raise UserError(f"train.masking=whole_word needs the data's WordPiece tokenizer to find words, and "
                        f"{tokenizer_dir} is missing; use train.masking=span or uniform, or rebuild the data")


def build_selector(cfg: PretrainConfig, tokenizer_dir: Path, device: torch.device) -> tuple[Selector | None, bool]:
    """``train.masking``'s selection function and whether word boundaries are known (a WordPiece tokenizer)."""
    t = cfg.train
    if t.masking == "uniform":
        return None, False
    check_word_masking(cfg, tokenizer_dir)
    flags = continuation_flags(tokenizer_dir, cfg.model.vocab_size)
    if flags is not None:
        flags = flags.to(device)
    return make_selector(t.masking, t.mask_prob, flags, t.span_p, t.span_max), flags is not None


def _init_text(init) -> str | None:
    """How run.json records where the weights came from."""
    if init is None:
        return None
    return " ".join(map(str, init)) if isinstance(init, tuple) else str(init)


def prepare_run(data: PretrainingData, out: Path, preset: str, overrides: list[str], max_steps: int | None,
                resume: bool, init: Path | tuple[Path, Path] | None = None, world: Dist | None = None,
                recipe: str | None = None) -> tuple[PretrainConfig, Path | None]:
    """Create or reopen the run folder; returns the config and the checkpoint to resume from.

    ``world``: the processes of a torchrun launch, checked against the batch before anything is written.
    ``recipe``: config.RECIPES, default the preset's (a resumed run keeps its own)."""
    if resume:
        # Nothing in the run folder changes here: config.json is rewritten only once the checkpoint has
        # loaded into the model this config builds (pretrain.py), so a refused resume leaves the run as it was.
        saved = load_run_config(out)
        cfg = copy.deepcopy(saved)
        cfg.train.stop_at = 0  # a resumed run goes on to max_steps unless told otherwise
        if max_steps is not None:
            cfg.train.max_steps = max_steps
        apply_overrides(cfg, overrides)
        check_resume_overrides(saved, cfg, out / "config.json")
        if world is not None:
            check_world(cfg.train, world)
        ckpt = latest_good_checkpoint(out)  # a damaged newest checkpoint is reported and skipped
        if ckpt is None and checkpoint_dirs(out):
            raise UserError(f"{out}: every checkpoint is damaged (see the warnings above); nothing to resume from")
        return cfg, ckpt

    claim_output_folder(out, overwrite=True)  # a file in the way is named, before the check below
    if out.exists() and any(out.iterdir()):
        hint = "pass --resume to continue it" if (out / "config.json").exists() else "it is not empty"
        raise UserError(f"{out}: the output folder already exists ({hint}, or choose another --out)")
    cfg = preset_config(preset, vocab_size=data.vocab_size, pad_token_id=data.special_ids["pad"], recipe=recipe)
    if init is not None:
        cfg = init_config_from_hf(cfg, init)  # the architecture comes from the weights, the recipe from the preset
        check_init_vocabulary(hf_pair_folders(init)[0], data.tokenizer_dir, data.dir)
    if max_steps is not None:
        # A shortened run keeps the paper's shape: warm-up is at most 10% of it (--set wins over this).
        cfg.train.max_steps = max_steps
        cfg.train.warmup_steps = min(cfg.train.warmup_steps, max(1, max_steps // 10))
    apply_overrides(cfg, overrides)
    if cfg.train.flops_budget:
        # A compute-matched run: the schedule spans exactly the budget (warm-up capped at 10% of it).
        if max_steps is not None:
            raise UserError("give --max-steps or a FLOPs budget, not both: the budget sets the run's length")
        cfg.train.max_steps = steps_for_budget(cfg, data.max_seq_length, cfg.train.flops_budget)
        cfg.train.warmup_steps = min(cfg.train.warmup_steps, max(1, cfg.train.max_steps // 10))
        cfg.validate()
    if cfg.train.algorithm == "two_stage" and not cfg.train.two_stage_generator_steps:
        # Pin "half of max_steps" now, so that a resume with another --max-steps keeps the switch where it was.
        cfg.train.two_stage_generator_steps = cfg.train.two_stage_switch_step()
    if cfg.model.vocab_size != data.vocab_size:
        raise UserError(f"model.vocab_size {cfg.model.vocab_size} differs from the data's vocabulary ({data.vocab_size})")
    if cfg.train.short_seq_length >= data.max_seq_length:
        raise UserError(f"train.short_seq_length {cfg.train.short_seq_length} must be below the data's "
                        f"{data.max_seq_length}-token examples ({data.dir})")
    if data.max_seq_length > cfg.model.max_position_embeddings:
        raise UserError(f"{data.dir}: examples of {data.max_seq_length} tokens exceed model.max_position_embeddings "
                        f"{cfg.model.max_position_embeddings}")
    cfg.validate()
    if world is not None:
        check_world(cfg.train, world)
    check_word_masking(cfg, data.tokenizer_dir)  # before anything is written
    # The run folder appears whole (config, run.json, tokenizer, the owner marker) or not at all: a new
    # run that fails here (a full disk) leaves no folder that a second attempt would call "not empty".
    with AtomicDir(out) as tmp:
        write_json(tmp / "run.json", {"data": str(data.dir.resolve()), "init": _init_text(init),
                                      "electra": __version__, "torch": torch.__version__})
        if data.tokenizer_dir.is_dir():
            copy_tree(data.tokenizer_dir, tmp / "tokenizer")
        mark_owned(tmp, "electra pretrain")
        write_json(tmp / "config.json", cfg.to_dict())
    return cfg, None


# What a checkpoint's weights and optimiser state are shaped by: a resumed run keeps them.
FIXED_ON_RESUME = ("model.", "generator.", "train.objective", "train.algorithm", "train.two_stage_generator_steps")


def check_resume_overrides(saved: PretrainConfig, cfg: PretrainConfig, path: Path) -> None:
    """A resumed run may change its schedule, logging and the like, never what its checkpoints were built
    with: one line naming the key, the value asked for and the checkpoint's."""
    old, new = _flat(saved.to_dict()), _flat(cfg.to_dict())
    for key in sorted(old):
        if key.startswith(FIXED_ON_RESUME) and old[key] != new.get(key):
            raise UserError(f"{key}={new.get(key)}: a resumed run keeps what its checkpoints were trained with, and "
                            f"{path} has {key}={old[key]}; drop that --set, or start a new run with another --out")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def prepare_run_everywhere(d: Dist, data: PretrainingData, out: Path, **how: Any) -> tuple[PretrainConfig, Path | None]:
    """``prepare_run(data, out, **how)`` on rank 0 (the only one that writes), checked against the processes
    ``d``, its config and checkpoint sent to the others; a refusal (UserError) is raised on every rank."""
    result: tuple = ("ok", None)
    if d.is_main:
        try:
            cfg, ckpt = prepare_run(data, out, world=d, **how)
            result = ("ok", (cfg.to_dict(), str(ckpt) if ckpt else None))
        except UserError as e:
            result = ("error", str(e))
            if not d.enabled:
                raise
    status, value = broadcast_object(result, d)
    if status == "error":
        raise UserError(value)
    cfg_dict, ckpt = value
    return PretrainConfig.from_dict(cfg_dict), Path(ckpt) if ckpt else None


def check_world(t: TrainConfig, d: Dist) -> int:
    """Micro-batches per rank per step; the global batch must split evenly into world_size x micro-batch."""
    micro = t.micro_batch_size or t.batch_size // d.world_size
    if t.batch_size % (d.world_size * max(1, micro)) or micro == 0:
        raise UserError(f"train.batch_size {t.batch_size} must be divisible by the number of processes "
                        f"({d.world_size}) x train.micro_batch_size ({t.micro_batch_size or 'batch_size / processes'})"
                        f"; change one of them")
    if d.enabled and t.algorithm == "two_stage":
        raise UserError("train.algorithm=two_stage is not supported with several processes yet (its stages leave "
                        "parameters unused); run it in one process, or use joint or adversarial")
    return t.batch_size // (d.world_size * micro)


def build_training(cfg: PretrainConfig, d: Dist, device: torch.device, sharded: bool, ckpt: Path | None,
                   init: str | Path | None) -> tuple[ElectraPretrainer, Any, torch.optim.AdamW, Any, dict[str, Any]]:
    """The model, the function that runs its step (DDP-wrapped, or FSDP-sharded when ``sharded``; compiled if
    asked), the optimiser, the unsharded copy rank 0 gathers FSDP weights into for saving (None otherwise) and
    the run state (step, data position, tokens seen), from the checkpoint ``ckpt``, the transformers weights
    ``init`` or the seed."""
    t = cfg.train
    torch.manual_seed(t.seed)  # same initial weights for the same seed, on any world size
    model = build_model(cfg).to(device)
    plain = None
    state = {"step": 0, "position": 0, "tokens_seen": 0}
    if sharded:
        # FSDP2 shards the parameters in place: load the full weights first, shard, then build the optimiser
        # over the shards and give it the checkpoint's full state.
        plain = build_model(cfg) if d.is_main else None  # rank 0 gathers the full weights into it to save
        if ckpt is not None:
            state = load_checkpoint(ckpt, model, None, device)
        elif init is not None:
            load_pretrainer_from_hf(model, init)
        step_fn = parallelize(model, t.parallel, d)
        optimizer = build_optimizer(model, t, device)
        if ckpt is not None:
            load_full_optimizer_state(model, optimizer, load_torch_file(ckpt / "optimizer.pt"))
    else:
        optimizer = build_optimizer(model, t, device)
        if ckpt is not None:
            state = load_checkpoint(ckpt, model, optimizer, device)
        elif init is not None:
            load_pretrainer_from_hf(model, init)
        step_fn = parallelize(model, t.parallel, d)  # DDP (the model itself in one process)
    if t.compile:
        step_fn = torch.compile(step_fn)
    return model, step_fn, optimizer, plain, state


def health_monitor(cfg: PretrainConfig, data: PretrainingData,
                   distributions: dict[str, torch.Tensor] | None) -> HealthMonitor:
    """The run's health checks (electra/pretraining/health.py); the generator check needs the data's unigram entropy."""
    t = cfg.train
    unigram = distributions["unigram"] if distributions is not None else unigram_distribution(data, data.special_ids)
    p = unigram[unigram > 0]
    return HealthMonitor(max_steps=t.max_steps, warmup_steps=t.warmup_steps, mask_prob=t.mask_prob,
                         unigram_entropy=float(-(p * p.log()).sum()), detector=cfg.train.trains_detector(),
                         log_every=t.log_every, recipe=cfg.recipe, generator_fraction=cfg.generator.hidden_fraction,
                         length_warmup=bool(t.short_seq_steps))
