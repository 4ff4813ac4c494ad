"""Pre-training: ``build_run`` (setup.py) -> the loop (``train``, below) -> evaluate (evaluation.py) -> checkpoint.

One optimiser step (step.py's ``train_step``) = one global batch of ``train.batch_size`` examples, processed in
``accumulation_steps`` micro-batches. The step never waits on the host except at logging, evaluation and
checkpoint steps (statistics stay on the device as one tensor until then).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from electra.config import TrainConfig
from electra.errors import Stopped, UserError
from electra.model import count_parameters
from electra.pretraining.algorithms import algorithm_state
from electra.pretraining.evaluation import evaluate, held_out_loss
from electra.pretraining.flops import training_flops, training_flops_per_step
from electra.pretraining.objective import ElectraPretrainer
from electra.pretraining.setup import Run, build_run
from electra.pretraining.stats import STAT_NAMES, summarise_stats
from electra.pretraining.step import train_step
from electra.runtime.checkpoint import read_best, record_best, save_checkpoint
from electra.runtime.distributed import (all_reduce_sum, any_rank, barrier, close_distributed, full_state,
                                         init_distributed)
from electra.runtime.preemption import StopSignals


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
        run = build_run(d, data_dir, out, preset, max_steps, overrides, resume, init, recipe)
        try:
            train(run, progress)
        finally:
            run.close()
        return run.out
    finally:
        close_distributed(d)


def train(run: Run, progress: bool = True) -> None:
    """The loop: a batch, a step, and at their steps logging, evaluation and a checkpoint, until max_steps (or
    train.stop_at, a signal, or too many non-finite steps in a row)."""
    t, d, log, data, out = run.cfg.train, run.d, run.log, run.data, run.out
    if run.step == 0 and log is not None:
        log.write(start_record(run))
    bar = tqdm(total=t.max_steps, initial=run.step, disable=not (progress and d.is_main), dynamic_ncols=True,
               unit="step", desc="pretrain")
    window = Window(run.device)
    tokens_seen = torch.tensor(run.state["tokens_seen"], device=run.device)  # stays on device: no sync per step
    # The checkpoint whose latest evaluation (at or before it) has the lowest held-out loss is kept.
    best = read_best(out) if run.resumed else None
    best_loss, last_eval_loss = (best["loss"] if best else float("inf")), float("inf")
    yardstick_postfix: dict[str, str] = {}
    skips_in_row = torch.zeros((), device=run.device)  # non-finite steps skip their update
    check_every_step = run.device.type != "cuda"  # on CPU a host read is free; on CUDA only at logging steps
    stop = StopSignals()
    try:
        stop.__enter__()
        stop_at = min(t.max_steps, t.stop_at or t.max_steps)
        while run.step < stop_at:
            result = train_step(run, run.batches.next(run.step))  # stream -> windows -> mask (batches.py)
            if result.switch is not None and log is not None:
                log.write(result.switch)
            window.add(result.stats, result.grad_norm, result.bad)
            skips_in_row = (skips_in_row + 1) * result.bad
            tokens_seen += result.num_tokens

            done = run.step + 1
            run.state = {"step": done, "position": run.state["position"] + t.batch_size, "tokens_seen": None}
            bar.update(1)
            last = done == stop_at
            stopping = stop.requested is not None
            if d.enabled and (check_every_step or done % t.log_every == 0 or last):
                stopping = any_rank(stopping, d, run.device)  # a stop on any rank stops all at the same step
            faulted = (check_every_step or done % t.log_every == 0) and int(skips_in_row) >= t.max_skipped_steps

            if done % t.log_every == 0 or last:
                all_reduce_sum(window.stats, d)  # every rank's share of the window
                record = window_record(run, done, result.lr, window, tokens_seen)
                if log is not None:
                    log.write(record)
                    for warning in run.health.observe(record):  # one line per stuck condition, once per run
                        log.write(warning)
                        bar.write(f"warning (step {warning['step']}): {warning['message']}", file=sys.stderr)
                bar.set_postfix(**progress_losses(record, run.model), **yardstick_postfix,
                                tok_s=f"{record['tokens_per_s']:.0f}")
                window.reset()
            if (done % t.eval_every == 0 or last) and not (stopping or faulted):
                # Every rank evaluates (a sharded model needs them all); rank 0 writes.
                record = {"step": done, "event": "eval", **evaluate(run)}
                if log is not None:
                    log.write(record)
                last_eval_loss = held_out_loss(record, t)  # rank 0's value is what counts (it alone writes)
                if "eval_unigram_auc" in record:  # the yardstick stays in the bar until the next evaluation
                    yardstick_postfix = {"uni_auc": f"{record['eval_unigram_auc']:.3f}"}
            if done % t.save_every == 0 or last or stopping or faulted:
                run.state["tokens_seen"] = int(tokens_seen.item())
                run.state.update(algorithm_state(run.reward_baseline))
                if d.is_main and last_eval_loss < best_loss:  # recorded first, so that pruning spares it
                    best_loss = last_eval_loss
                    record_best(out, out / "checkpoints" / f"step-{done:08d}", done, best_loss)
                ckpt = save_everywhere(run)
            resume_hint = f"continue with `electra pretrain --data {data.dir} --out {out} --resume`"
            if faulted:
                if log is not None:
                    log.write({"step": done, "event": "stopped", "reason": "non-finite gradients"})
                raise UserError(f"{out}: the last {int(skips_in_row)} steps (to step {done}) had non-finite losses or "
                                f"gradients and were skipped; the weights are those from before the fault, saved as "
                                f"{ckpt.name}; lower train.learning_rate (or check the data) and {resume_hint}")
            if stopping:
                signum = stop.requested or signal.SIGTERM  # another rank's signal: the usual one of a scheduler
                if log is not None:
                    log.write({"step": done, "event": "stopped", "reason": signum.name})
                raise Stopped(f"stopped by {signum.name} after step {done}; checkpoint {ckpt}; {resume_hint}",
                              128 + int(signum))
    except torch.OutOfMemoryError:
        raise UserError(out_of_memory_hint(t, run.device)) from None
    except RuntimeError as e:
        if "can't allocate memory" not in str(e) and "out of memory" not in str(e):
            raise
        raise UserError(out_of_memory_hint(t, run.device)) from None
    finally:
        stop.__exit__()
        bar.close()


class Window:
    """The sums of one logging window, kept on the device until a logging step reads them."""

    def __init__(self, device: torch.device):
        self.stats = torch.zeros(len(STAT_NAMES), device=device)  # this rank's STAT_NAMES sums
        self.grad_norm = torch.zeros((), device=device)  # summed over the steps that were not skipped
        self.skipped = torch.zeros((), device=device)  # steps whose gradients were not finite
        self.start, self.steps = time.perf_counter(), 0

    def add(self, stats: torch.Tensor, grad_norm: torch.Tensor, bad: torch.Tensor) -> None:
        self.stats += stats
        self.skipped += bad
        self.grad_norm += torch.where(bad, 0.0, grad_norm)
        self.steps += 1

    def reset(self) -> None:
        self.stats.zero_()
        self.grad_norm.zero_()
        self.skipped.zero_()
        self.start, self.steps = time.perf_counter(), 0


def save_everywhere(run: Run) -> Path:
    """Rank 0 writes the checkpoint of step ``run.step``: the full, unsharded state in the single-process
    layout (gathered from every rank when sharded). Every rank returns its path once it exists."""
    weights, optim = full_state(run.model, run.optimizer, run.plain, run.d) if run.sharded else \
        (run.model, run.optimizer)
    ckpt = run.out / "checkpoints" / f"step-{run.step:08d}"
    if run.d.is_main:
        ckpt = save_checkpoint(run.out, weights, optim, run.state, run.cfg.train.keep_checkpoints)
    barrier(run.d)
    return ckpt


def start_record(run: Run) -> dict[str, Any]:
    """The metrics log's first record: what the run trains, on what, with which batch layout."""
    cfg, model, data, device, d, accumulation = run.cfg, run.model, run.data, run.device, run.d, run.accumulation
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
        record["word_boundaries"] = run.word_boundaries or data.has_word_starts  # span without either: token spans
        if data.has_word_starts:
            record["word_segmenter"] = data.manifest["word_segmenter"]  # words from the stored starts, not ##
    return record


def window_record(run: Run, done: int, lr: float, window: Window, tokens_seen: torch.Tensor) -> dict[str, Any]:
    """The metrics record of the logging window that ends at step ``done`` (the window's summed stats, over
    all ranks); reading them is the one host sync of a logging step."""
    cfg, data = run.cfg, run.data
    summary = summarise_stats(window.stats)
    window_tokens = window.stats[STAT_NAMES.index("num_tokens")].item()
    skipped = int(window.skipped.item())
    elapsed = time.perf_counter() - window.start
    record = {"step": done, "lr": lr, "grad_norm": window.grad_norm.item() / max(1, window.steps - skipped),
              **summary, "skipped_steps": skipped,
              "tokens_seen": int(tokens_seen.item()),
              "flops": training_flops(cfg, data.max_seq_length, done),
              "steps_per_s": window.steps / elapsed,
              "tokens_per_s": window_tokens / elapsed}
    if run.reward_baseline is not None:
        record["reward_baseline"] = run.reward_baseline.value().item()
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


def out_of_memory_hint(t: TrainConfig, device: torch.device) -> str:
    micro = t.micro_batch_size or t.batch_size
    smaller = max(1, micro // 2)
    while t.batch_size % smaller:
        smaller -= 1
    return (f"out of memory on {device} with {micro} examples per forward pass; try --set train.micro_batch_size="
            f"{smaller} (gradient accumulation keeps the global batch of {t.batch_size})")
