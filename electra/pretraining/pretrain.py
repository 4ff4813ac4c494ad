"""Pre-training: set-up -> loop -> evaluate -> checkpoint. Read it top to bottom.

One optimiser step = one global batch of ``train.batch_size`` examples, processed
in ``accumulation_steps`` micro-batches. The step never waits on the host except
at logging, evaluation and checkpoint steps (statistics stay on the device as one
tensor until then).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from electra import __version__
from electra.config import PretrainConfig, TrainConfig, apply_overrides, local_init_frequencies, preset_config
from electra.data.loader import BatchStream, PretrainingData, cut_into_windows, eval_batches
from electra.errors import Stopped, UserError
from electra.interop.hf import check_init_vocabulary, hf_pair_folders, init_config_from_hf, load_pretrainer_from_hf
from electra.model import count_parameters
from electra.pretraining.algorithms import (algorithm_state, init_discriminator_from_generator, load_algorithm_state,
                                            phase_at, schedule_position)
from electra.pretraining.flops import steps_for_budget, training_flops, training_flops_per_step
from electra.pretraining.health import HealthMonitor
from electra.pretraining.local_init import init_local_attention
from electra.pretraining.masking import (BERT_MASK_TOKEN_PROB, BERT_RANDOM_TOKEN_PROB, MaskedBatch, Selector,
                                         continuation_flags, make_selector, mask_batch)
from electra.pretraining.objective import ElectraPretrainer
from electra.pretraining.stats import STAT_NAMES, summarise_stats
from electra.pretraining.yardstick import unigram_distribution, yardstick_aucs, yardstick_distributions
from electra.runtime.checkpoint import (checkpoint_dirs, latest_good_checkpoint, load_checkpoint, load_run_config,
                                        read_best, record_best, save_checkpoint)
from electra.runtime.device import autocast_for, fused_adamw
from electra.runtime.distributed import (Dist, all_reduce_sum, any_rank, barrier, broadcast_object, close_distributed,
                                         full_state, init_distributed, load_full_optimizer_state, no_gradient_sync,
                                         parallelize, run_device)
from electra.runtime.files import write_json
from electra.runtime.loggers import ScalarSinks
from electra.runtime.metrics_log import MetricsLog
from electra.runtime.preemption import StopSignals


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


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps`` times linear decay to 0 at ``max_steps`` (Google's ELECTRA).

    ``step`` is the 0-based index of the update about to be made.
    """
    warmup = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    decay = max(0.0, 1.0 - step / cfg.max_steps)
    return cfg.learning_rate * warmup * decay


def masked_on_device(batch: dict[str, torch.Tensor], special_ids: dict[str, int], t: TrainConfig,
                     device: torch.device, select: Selector | None = None, vocab_size: int = 0,
                     noise_cdf: torch.Tensor | None = None) -> MaskedBatch:
    """Move a loader batch to the device and mask it there; whether it has padding is read on the host.

    ``select``: whole-word or span selection (``build_selector``). ``train.corruption``: BERT's (80% [MASK],
    10% a random one of ``vocab_size`` tokens, 10% kept; the default for the MLM objective) or ELECTRA's.
    The hybrid objective: ``mask_token_prob`` [MASK], the rest drawn from ``noise_cdf`` (``noise_for``).
    """
    has_padding = not bool(batch["attention_mask"].all())  # CPU tensor: free
    b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    bert = t.uses_bert_corruption()
    if t.objective == "hybrid":
        mask_token_prob, random_token_prob = t.mask_token_prob, 1.0 - t.mask_token_prob
    else:
        mask_token_prob = BERT_MASK_TOKEN_PROB if bert else t.mask_token_prob
        random_token_prob = BERT_RANDOM_TOKEN_PROB if bert else 0.0
    return mask_batch(b["input_ids"], b["attention_mask"], b["token_type_ids"], b["keys"], special_ids,
                      t.mask_prob, mask_token_prob, t.seed, has_padding=has_padding, select=select,
                      random_token_prob=random_token_prob, vocab_size=vocab_size,
                      position_ids=b.get("position_ids"), noise_cdf=noise_cdf, word_starts=b.get("word_starts"))


def noise_for(cfg: PretrainConfig, distributions: dict[str, torch.Tensor] | None,
              device: torch.device) -> torch.Tensor | None:
    """The cumulative distribution (V,) float64 the hybrid objective draws its replacements from (``train.noise``:
    the yardstick's ``distributions``, the training data's unigram frequencies or uniform over non-special ids);
    None for the other objectives."""
    if cfg.train.objective != "hybrid":
        return None
    return distributions[cfg.train.noise].cumsum(0).to(device)


def build_model(cfg: PretrainConfig) -> ElectraPretrainer:
    """The generator and discriminator of a run, with its objective, weight sharing and training algorithm."""
    t = cfg.train
    # The detector's output bias starts at the log-odds of its share of replaced tokens: about mask_prob for
    # ELECTRA; for the hybrid the selected tokens not shown as [MASK], among the tokens it scores.
    prior = t.mask_prob if t.objective != "hybrid" else \
        t.mask_prob * (1 - t.mask_token_prob) / (1 - t.mask_prob * t.mask_token_prob)
    model = ElectraPretrainer(cfg.model, cfg.generator_model_config(), t.objective, cfg.generator.sharing,
                              t.algorithm, replaced_prior=prior)
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


def enter_phase(model: ElectraPretrainer, step: int, t: TrainConfig) -> dict[str, Any] | None:
    """Put the model in the phase of step ``step`` (algorithms.phase_at). At two-stage's switch (the first
    discriminator step, n) the discriminator is initialised from the generator; returns the log record then.

    The record carries step n + 1, the step it precedes, so a resume from the checkpoint of step n (taken
    before the copy) drops it and logs it again when the copy is redone.
    """
    model.phase = phase_at(step, t)
    if t.algorithm != "two_stage" or step != t.two_stage_switch_step():
        return None
    copied, total = init_discriminator_from_generator(model)
    return {"event": "two_stage_switch", "step": step + 1, "generator_steps": step,
            "copied_tensors": copied, "discriminator_encoder_tensors": total}


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
        cfg = load_run_config(out)
        cfg.train.stop_at = 0  # a resumed run goes on to max_steps unless told otherwise
        if max_steps is not None:
            cfg.train.max_steps = max_steps
        apply_overrides(cfg, overrides)
        if world is not None:
            check_world(cfg.train, world)
        write_json(out / "config.json", cfg.to_dict())
        ckpt = latest_good_checkpoint(out)  # a damaged newest checkpoint is reported and skipped
        if ckpt is None and checkpoint_dirs(out):
            raise UserError(f"{out}: every checkpoint is damaged (see the warnings above); nothing to resume from")
        return cfg, ckpt

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
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_dict())
    write_json(out / "run.json", {"data": str(data.dir.resolve()), "init": _init_text(init),
                                  "electra": __version__, "torch": torch.__version__})
    if data.tokenizer_dir.is_dir():
        shutil.copytree(data.tokenizer_dir, out / "tokenizer", dirs_exist_ok=True)
    return cfg, None


def has_binary_discriminator(cfg: PretrainConfig) -> bool:
    """Whether the run trains a replaced-token detector (the yardstick applies); the MLM objectives do not."""
    return cfg.train.objective in ("electra", "electra15", "hybrid")


@torch.no_grad()
def evaluate(model: ElectraPretrainer, data: PretrainingData, cfg: PretrainConfig, device: torch.device,
             autocast, select: Selector | None = None,
             yardstick: dict[str, torch.Tensor] | None = None, noise_cdf: torch.Tensor | None = None
             ) -> dict[str, float]:
    """Losses and accuracies on the held-out slice, with a fixed masking so evaluations are comparable;
    with ``yardstick`` (yardstick.yardstick_distributions) also the discriminator's ``eval_unigram_auc`` and
    ``eval_uniform_auc``, the same for every run on the same data."""
    model.eval()
    t = cfg.train
    batch_size = t.micro_batch_size or t.batch_size
    total = torch.zeros(len(STAT_NAMES), device=device)
    for batch in eval_batches(data, t.eval_examples, batch_size):
        mb = masked_on_device(batch, data.special_ids, t, device, select, cfg.model.vocab_size, noise_cdf)
        with autocast():
            _, stats = model(mb, t.seed, t.disc_weight, mb.valid.sum(), mb.attention_mask.sum())
        total += stats
    record = {f"eval_{k}": v for k, v in summarise_stats(total).items()}
    if yardstick is not None:
        record.update(yardstick_aucs(model.discriminator, data, yardstick, device, batch_size, autocast))
    model.train()
    return record


def prepare_run_everywhere(d: Dist, *args) -> tuple[PretrainConfig, Path | None]:
    """``prepare_run`` on rank 0 (the only one that writes), its config and checkpoint sent to the others;
    a refusal (UserError) is raised on every rank."""
    result: tuple = ("ok", None)
    if d.is_main:
        try:
            cfg, ckpt = prepare_run(*args)
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


def dropout_seed(seed: int, step: int, rank: int) -> int:
    """The seed of this step's dropout masks on this rank. Reseeding every step makes the masks a function of
    (seed, step, rank): a resumed run draws those of the uninterrupted one without saved RNG state, and
    under torchrun each rank draws its own (one shared seed gave every rank the same masks)."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0] >> 1)  # < 2**63


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


def pretrain(data_dir: str | Path, out: str | Path, preset: str = "small", max_steps: int | None = None,
             overrides: list[str] | None = None, resume: bool = False, progress: bool = True,
             init: str | Path | tuple | list | None = None, recipe: str | None = None) -> Path:
    """Train (or, with ``resume``, continue) a run; ``init``: start from transformers ELECTRA weights (an
    export folder, one discriminator folder, or a (discriminator, generator) pair of folders as the hub has
    them); ``recipe``: config.RECIPES (default: the preset's, config.default_recipe).

    Under ``torchrun`` every process runs this; they split each global batch (see electra/runtime/distributed.py).
    """
    d = init_distributed()
    try:
        return _pretrain(d, data_dir, out, preset, max_steps, overrides, resume, progress, init, recipe)
    finally:
        close_distributed(d)


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
            load_algorithm_state(model, state)
        elif init is not None:
            load_pretrainer_from_hf(model, init)
        step_fn = parallelize(model, t.parallel, d)
        optimizer = build_optimizer(model, t, device)
        if ckpt is not None:
            load_full_optimizer_state(model, optimizer, torch.load(ckpt / "optimizer.pt", map_location="cpu",
                                                                   weights_only=True))
    else:
        optimizer = build_optimizer(model, t, device)
        if ckpt is not None:
            state = load_checkpoint(ckpt, model, optimizer, device)
            load_algorithm_state(model, state)  # the adversarial baseline
        elif init is not None:
            load_pretrainer_from_hf(model, init)
        step_fn = parallelize(model, t.parallel, d)  # DDP (the model itself in one process)
    if t.compile:
        step_fn = torch.compile(step_fn)
    return model, step_fn, optimizer, plain, state


def start_record(cfg: PretrainConfig, model: ElectraPretrainer, data: PretrainingData, device: torch.device,
                 d: Dist, accumulation: int, word_boundaries: bool) -> dict[str, Any]:
    """The metrics log's first record: what the run trains, on what, with which batch layout."""
    t = cfg.train
    gen_params = 0 if model.generator is None else \
        count_parameters(model) - count_parameters(model.discriminator)  # what the generator adds
    record = {"event": "start", "step": 0, "preset": cfg.preset, "device": str(device),
              # analytic, at full length (two_stage: the run's average; training_flops counts each stage's
              # steps at their own cost)
              "flops_per_step": training_flops_per_step(cfg, data.max_seq_length)["train"],
              "max_steps": t.max_steps,
              "discriminator_params": count_parameters(model.discriminator), "generator_params": gen_params,
              "train_examples": data.num_examples("train"), "accumulation_steps": accumulation,
              "world_size": d.world_size, "micro_batch_size": t.batch_size // (d.world_size * accumulation),
              "global_batch_size": t.batch_size}  # = micro_batch_size x accumulation_steps x world_size
    if t.masking != "uniform":
        record["word_boundaries"] = word_boundaries or data.has_word_starts  # span without either: token spans
        if data.has_word_starts:
            record["word_segmenter"] = data.manifest["word_segmenter"]  # words from the stored starts, not ##
    return record


def window_record(done: int, lr: float, window_stats: torch.Tensor, window_grad_norm: torch.Tensor,
                  window_skipped: torch.Tensor, window_steps: int, elapsed: float, tokens_seen: torch.Tensor,
                  cfg: PretrainConfig, data: PretrainingData, model: ElectraPretrainer) -> dict[str, Any]:
    """The metrics record of the logging window that ends at step ``done`` (the window's summed stats, over
    all ranks); reading them is the one host sync of a logging step."""
    summary = summarise_stats(window_stats)
    window_tokens = window_stats[STAT_NAMES.index("num_tokens")].item()
    skipped = int(window_skipped.item())
    record = {"step": done, "lr": lr, "grad_norm": window_grad_norm.item() / max(1, window_steps - skipped),
              **summary, "skipped_steps": skipped,
              "tokens_seen": int(tokens_seen.item()),
              "flops": training_flops(cfg, data.max_seq_length, done),
              "steps_per_s": window_steps / elapsed,
              "tokens_per_s": window_tokens / elapsed}
    if cfg.train.algorithm == "adversarial":
        record["reward_baseline"] = model.reward_baseline.value().item()
    return record


def progress_losses(record: dict[str, Any], model: ElectraPretrainer) -> dict[str, str]:
    """The losses the progress bar shows: the masked LM's for the MLM objectives, else generator and
    discriminator."""
    losses = {"mlm": f"{record['mlm_loss']:.3f}"} if "mlm_loss" in record else {}
    if model.generator is not None and model.objective != "hybrid":  # the hybrid's masked LM is "mlm"
        losses["gen"] = f"{record['gen_loss']:.3f}"
    if "mlm_loss" not in record or "disc_auc" in record:  # the hybrid has both
        losses["disc"] = f"{record['disc_loss']:.3f}"
    if "disc_auc" in record:
        losses["auc"] = f"{record['disc_auc']:.3f}"
    return losses


def train_step(model: ElectraPretrainer, step_fn: Any, optimizer: torch.optim.AdamW, params: list[torch.Tensor],
               mb: MaskedBatch, t: TrainConfig, d: Dist, accumulation: int, autocast: Any, device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One update on this rank's share ``mb`` of the global batch, in ``accumulation`` micro-batches.

    Returns, all on the device (no host sync on CUDA): the stats summed over the micro-batches
    ((len(STAT_NAMES),), this rank's), the gradient norm before clipping, whether it was non-finite (the
    update is then skipped) and the global batch's token count.
    """
    # Global counts normalise every micro-batch's loss (see ElectraPretrainer.forward); with several
    # processes, those of the whole global batch (summed over ranks), so the ranks' gradients sum to it.
    num_selected, num_tokens = mb.valid.sum(), mb.attention_mask.sum()
    if d.enabled:
        counts = all_reduce_sum(torch.stack([num_selected, num_tokens]), d)
        num_selected, num_tokens = counts[0], counts[1]
    step_stats = torch.zeros(len(STAT_NAMES), device=device)
    micros = mb.split(accumulation)
    for i, micro in enumerate(micros):
        # Gradients are reduced over ranks after the last micro-batch only.
        with no_gradient_sync(step_fn, last=i == len(micros) - 1) if d.enabled else contextlib.nullcontext():
            with autocast():
                loss, stats = step_fn(micro, t.seed, t.disc_weight, num_selected, num_tokens)
            loss.backward()
        step_stats += stats
    grad_norm = torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
    if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor, the norm over all shards
        grad_norm = grad_norm.full_tensor()
    bad = ~torch.isfinite(grad_norm)  # a non-finite loss makes the gradient norm non-finite too
    if device.type == "cuda" and getattr(optimizer, "defaults", {}).get("fused"):
        optimizer.found_inf = bad.float()  # the fused kernel skips the whole update when set
        optimizer.step()
    elif not bool(bad):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if t.algorithm == "adversarial":  # the REINFORCE baseline: the global batch's mean (a copy: stats stay local)
        model.end_step(all_reduce_sum(step_stats.clone(), d))
    return step_stats, grad_norm, bad, num_tokens


def _pretrain(d: Dist, data_dir: str | Path, out: str | Path, preset: str, max_steps: int | None,
              overrides: list[str] | None, resume: bool, progress: bool, init: str | Path | None,
              recipe: str | None = None) -> Path:
    data = PretrainingData(data_dir)
    out = Path(out)
    if init is not None and resume:
        raise UserError("--init starts a new run from given weights; --resume continues a run: use one of them")
    if isinstance(init, (tuple, list)):
        if len(init) not in (1, 2):
            raise UserError(f"--init takes one folder (an export, or a discriminator) or two (the discriminator's "
                            f"and the generator's), got {len(init)}")
        init = Path(init[0]) if len(init) == 1 else (Path(init[0]), Path(init[1]))
    elif init is not None:
        init = Path(init)
    if d.enabled:
        cfg, ckpt = prepare_run_everywhere(d, data, out, preset, overrides or [], max_steps, resume, init, d,
                                           recipe)
    else:
        cfg, ckpt = prepare_run(data, out, preset, overrides or [], max_steps, resume, init, recipe=recipe)
    t = cfg.train
    accumulation = check_world(t, d)
    device = run_device(t.device, d)
    autocast = autocast_for(device, t.precision)

    select, word_boundaries = build_selector(cfg, tokenizer_for(data, out), device)
    sharded = d.enabled and t.parallel == "fsdp"
    model, step_fn, optimizer, plain, state = build_training(cfg, d, device, sharded, ckpt, init)

    # The held-out yardstick's replacement distributions (the same for every run on this data).
    yardstick = yardstick_distributions(data) if has_binary_discriminator(cfg) else None
    health = health_monitor(cfg, data, yardstick)
    noise_cdf = noise_for(cfg, yardstick, device)  # hybrid has a binary discriminator, so a yardstick
    resume_step = state["step"] if resume else None
    log = MetricsLog(out / "metrics.jsonl", resume_step, ScalarSinks(cfg.log, out, resume_step, cfg.to_dict())) \
        if d.is_main else None
    if state["step"] == 0 and log is not None:
        log.write(start_record(cfg, model, data, device, d, accumulation, word_boundaries))

    # Every rank reads the same global batches and takes its contiguous slice of each.
    stream = BatchStream(data, t.batch_size, state["position"], t.seed, rank=d.rank, world_size=d.world_size,
                         pin_memory=device.type == "cuda")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    bar = tqdm(total=t.max_steps, initial=state["step"], disable=not (progress and d.is_main), dynamic_ncols=True,
               unit="step", desc="pretrain")
    window_stats = torch.zeros(len(STAT_NAMES), device=device)
    window_grad_norm = torch.zeros((), device=device)
    tokens_seen = torch.tensor(state["tokens_seen"], device=device)  # stays on device: no sync per step
    window_start, window_steps = time.perf_counter(), 0
    # The checkpoint whose latest evaluation (at or before it) has the lowest held-out loss is kept.
    best = read_best(out) if resume else None
    best_loss = best["loss"] if best else float("inf")
    last_eval_loss = float("inf")
    yardstick_postfix: dict[str, str] = {}
    # Non-finite gradients skip the update (fused AdamW on CUDA reads found_inf on the device: no sync).
    window_skipped = torch.zeros((), device=device)
    skips_in_row = torch.zeros((), device=device)
    check_every_step = device.type != "cuda"  # on CPU a host read is free; on CUDA only at logging steps
    stop = StopSignals()
    try:
        stop.__enter__()
        stop_at = min(t.max_steps, t.stop_at or t.max_steps)
        while state["step"] < stop_at:
            step = state["step"]
            lr = learning_rate(*schedule_position(step, t))  # (step, t) unless two_stage: per stage
            for group in optimizer.param_groups:
                group["lr"] = lr
            switch = enter_phase(model, step, t)
            if switch is not None and log is not None:
                log.write(switch)

            torch.manual_seed(dropout_seed(t.seed, step, d.rank))
            batch = next(stream)
            window = t.window_length(step, data.max_seq_length)
            if window is not None:  # sequence-length warm-up: the same tokens as short windows
                batch = cut_into_windows(batch, window, data.special_ids["pad"])
            mb = masked_on_device(batch, data.special_ids, t, device, select, cfg.model.vocab_size, noise_cdf)
            stats, grad_norm, bad, num_tokens = train_step(model, step_fn, optimizer, params, mb, t, d,
                                                           accumulation, autocast, device)
            window_stats += stats
            window_skipped += bad
            skips_in_row = (skips_in_row + 1) * bad
            window_grad_norm += torch.where(bad, 0.0, grad_norm)
            tokens_seen += num_tokens

            done = step + 1
            state = {"step": done, "position": state["position"] + t.batch_size, "tokens_seen": None}
            window_steps += 1
            bar.update(1)
            last = done == stop_at
            stopping = stop.requested is not None
            if d.enabled and (check_every_step or done % t.log_every == 0 or last):
                stopping = any_rank(stopping, d, device)  # a stop on any rank stops all at the same step
            faulted = (check_every_step or done % t.log_every == 0) and int(skips_in_row) >= t.max_skipped_steps

            if done % t.log_every == 0 or last:
                all_reduce_sum(window_stats, d)  # every rank's share of the window
                record = window_record(done, lr, window_stats, window_grad_norm, window_skipped, window_steps,
                                       time.perf_counter() - window_start, tokens_seen, cfg, data, model)
                if log is not None:
                    log.write(record)
                    for warning in health.observe(record):  # one line per stuck condition, once per run
                        log.write(warning)
                        bar.write(f"warning (step {warning['step']}): {warning['message']}", file=sys.stderr)
                bar.set_postfix(**progress_losses(record, model), **yardstick_postfix,
                                tok_s=f"{record['tokens_per_s']:.0f}")
                window_stats.zero_()
                window_grad_norm.zero_()
                window_skipped.zero_()
                window_start, window_steps = time.perf_counter(), 0
            if (done % t.eval_every == 0 or last) and not (stopping or faulted):
                # Every rank evaluates (a sharded model needs them all); rank 0 writes.
                record = {"step": done, "event": "eval", **evaluate(model, data, cfg, device, autocast, select, yardstick,
                                                                 noise_cdf)}
                if log is not None:
                    log.write(record)
                last_eval_loss = held_out_loss(record, t)  # rank 0's value is what counts (it alone writes)
                if "eval_unigram_auc" in record:  # the yardstick stays in the bar until the next evaluation
                    yardstick_postfix = {"uni_auc": f"{record['eval_unigram_auc']:.3f}"}
            if done % t.save_every == 0 or last or stopping or faulted:
                state["tokens_seen"] = int(tokens_seen.item())
                state.update(algorithm_state(model))
                # The full, unsharded state in the single-process layout, written by rank 0 only.
                weights, optim = full_state(model, optimizer, plain, d) if sharded else (model, optimizer)
                if d.is_main:
                    if last_eval_loss < best_loss:  # recorded first, so that pruning spares it
                        best_loss = last_eval_loss
                        record_best(out, out / "checkpoints" / f"step-{done:08d}", done, best_loss)
                    ckpt = save_checkpoint(out, weights, optim, state, t.keep_checkpoints)
                else:
                    ckpt = out / "checkpoints" / f"step-{done:08d}"
                barrier(d)
            resume = f"continue with `electra pretrain --data {data.dir} --out {out} --resume`"
            if faulted:
                if log is not None:
                    log.write({"step": done, "event": "stopped", "reason": "non-finite gradients"})
                raise UserError(f"{out}: the last {int(skips_in_row)} steps (to step {done}) had non-finite losses or "
                                f"gradients and were skipped; the weights are those from before the fault, saved as "
                                f"{ckpt.name}; lower train.learning_rate (or check the data) and {resume}")
            if stopping:
                signum = stop.requested or signal.SIGTERM  # another rank's signal: the usual one of a scheduler
                if log is not None:
                    log.write({"step": done, "event": "stopped", "reason": signum.name})
                raise Stopped(f"stopped by {signum.name} after step {done}; checkpoint {ckpt}; {resume}",
                              128 + int(signum))
    except torch.OutOfMemoryError:
        raise UserError(out_of_memory_hint(t, device)) from None
    except RuntimeError as e:
        if "can't allocate memory" not in str(e) and "out of memory" not in str(e):
            raise
        raise UserError(out_of_memory_hint(t, device)) from None
    finally:
        stop.__exit__()
        stream.close()
        bar.close()
        if log is not None:
            log.close()
    return out


def health_monitor(cfg: PretrainConfig, data: PretrainingData,
                   yardstick: dict[str, torch.Tensor] | None) -> HealthMonitor:
    """The run's health checks (electra/pretraining/health.py); the generator check needs the data's unigram entropy."""
    t = cfg.train
    unigram = yardstick["unigram"] if yardstick is not None else unigram_distribution(data, data.special_ids)
    p = unigram[unigram > 0]
    return HealthMonitor(max_steps=t.max_steps, warmup_steps=t.warmup_steps, mask_prob=t.mask_prob,
                         unigram_entropy=float(-(p * p.log()).sum()), detector=has_binary_discriminator(cfg),
                         log_every=t.log_every, recipe=cfg.recipe, generator_fraction=cfg.generator.hidden_fraction,
                         length_warmup=bool(t.short_seq_steps))


def held_out_loss(record: dict[str, float], t: TrainConfig) -> float:
    """The training objective on the held-out slice (absent parts are 0): MLM terms + λ · discriminator."""
    return (record.get("eval_gen_loss", 0.0) + record.get("eval_mlm_loss", 0.0)
            + t.disc_weight * record.get("eval_disc_loss", 0.0))


def out_of_memory_hint(t: TrainConfig, device: torch.device) -> str:
    micro = t.micro_batch_size or t.batch_size
    smaller = max(1, micro // 2)
    while t.batch_size % smaller:
        smaller -= 1
    return (f"out of memory on {device} with {micro} examples per forward pass; try --set train.micro_batch_size="
            f"{smaller} (gradient accumulation keeps the global batch of {t.batch_size})")
