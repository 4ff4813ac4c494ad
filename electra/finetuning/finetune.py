"""Fine-tuning: set-up -> loop -> evaluate -> keep the best. Read it top to bottom.

The paper's recipe (docs/design.md, "Fine-tuning recipe"): AdamW, a learning rate set by model size,
layer-wise learning-rate decay, 10% warm-up then linear decay, no weight decay, batch 32, 3 epochs. Batches
are built from examples of similar length (length bucketing) and padded only to their longest member. The
model is evaluated on dev every ``eval_every`` steps; the best evaluation's weights are what gets saved.

A fine-tuning folder::

    runs/t/finetune.json     the config, the task (labels, reader options), where the model came from
    runs/t/results.json      per-seed best dev metrics; median, mean and std over seeds
    runs/t/seed-N/           metrics.jsonl and best/ (a transformers folder + task.json) for seed N
    runs/t/model/            the best seed's best/ : what `evaluate` and `predict` use
    runs/t/.electra          the marker that lets a later `electra finetune --out runs/t` replace the folder

Nothing a user has is lost (docs/reliability.md): ``--out`` must be new, empty, or an earlier fine-tuning
folder (with the marker; anything else needs ``overwrite``), and must not hold the command's inputs. A new
folder is written in place (its logs can be watched) and removed again if the run fails; an earlier one is
replaced only when the new run is complete (it is built in a hidden sibling), so a failed re-run leaves it as it
was. Every file goes through ``electra.runtime.files`` (whole or not at all; a full disk is one line).

A step whose loss or gradients are not finite is skipped (the weights stay as they were) and counted; after
``max_skipped_steps`` of them in a row the run stops with one line. An evaluation only becomes "best" when the
dev outputs, the primary metric and every weight are finite, so a diverged model is never saved.

Under torchrun (docs/distributed.md) every rank builds the same length-bucketed batch order from the seed and
trains on its slice of each global batch (DDP, gradients summed); rank 0 alone evaluates, decides and writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from electra.config import (LogConfig, ModelConfig, check_optimiser_limits, check_precision_and_device, check_types,
                            set_fields)
from electra.data.tokenizer import load_tokenizer, special_token_ids
from electra.errors import UserError
from electra.finetuning.tasks import IGNORE, Task, check_seq_length, collate, make_task, min_seq_length
from electra.interop.model_card import CARD, finetuned_card
from electra.pretraining.export import load_encoder_source
from electra.runtime.device import autocast_for, fused_adamw
from electra.runtime.distributed import (Dist, all_reduce_sum, barrier, broadcast_object, close_distributed,
                                         init_distributed, parallelize, run_device)
from electra.runtime.files import (OWNER_MARKER, AtomicDir, WriteFailed, claim_output_folder, copy_file, is_owned,
                                   make_folder, mark_owned, save_safetensors, write_json, write_text)
from electra.runtime.loggers import ScalarSinks
from electra.runtime.metrics_log import MetricsLog

TASK_FILE = "task.json"


@dataclass
class FinetuneConfig:
    """The fine-tuning recipe; 0 in a field marked "auto" means the paper's value for the model's size."""

    learning_rate: float = 0.0        # auto: 3e-4 (hidden <= 256, Small), 1e-4 (<= 768, Base), 5e-5 (Large)
    layerwise_lr_decay: float = 0.0   # auto: 0.8 (0.9 for >= 24 layers); 1.0 turns it off
    lr_decay_style: str = "correct"   # correct: top layer at lr*d | google: top layer at lr*d^2 (their off-by-one)
    epochs: float = 3.0
    batch_size: int = 32
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    max_seq_length: int = 0           # auto: 128 (classification, tagging), 384 (qa)
    doc_stride: int = 128             # qa: overlap between windows of a long context
    max_query_length: int = 64        # qa: longer questions are cut
    n_best_size: int = 20             # qa: candidate spans kept per question
    max_answer_length: int = 30       # qa: in tokens
    null_score_diff_threshold: float = 0.0  # qa v2.0: predict "no answer" when null score - best span > this
    eval_every: int = 0               # steps between dev evaluations; 0 = twice per epoch
    log_every: int = 50               # steps between training-loss records in metrics.jsonl
    seed: int = 1                     # seeds are seed, seed+1, ... with --seeds K
    max_skipped_steps: int = 10       # stop after this many steps in a row with a non-finite loss or gradients
    init: str = "pretrained"          # pretrained | scratch (same architecture and tokenizer, random weights)
    device: str = "auto"
    precision: str = "auto"           # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16

    def resolve(self, model: ModelConfig, task: str) -> "FinetuneConfig":
        c = dataclasses.replace(self)
        if not c.learning_rate:
            c.learning_rate = 3e-4 if model.hidden_size <= 256 else 1e-4 if model.hidden_size <= 768 else 5e-5
        if not c.layerwise_lr_decay:
            c.layerwise_lr_decay = 0.9 if model.num_hidden_layers >= 24 else 0.8
        if not c.max_seq_length:
            c.max_seq_length = 384 if task == "qa" else 128
        c.validate()
        # Below what the task's template needs, tokenizers silently stops truncating (and an empty text is all
        # the model would see): refused here, before any file is read, with the smallest length that works.
        check_seq_length(c.max_seq_length, task, max_query_length=c.max_query_length)
        if model.max_position_embeddings < min_seq_length(task, max_query_length=c.max_query_length):
            raise UserError(f"the model's max_position_embeddings is {model.max_position_embeddings}, below the "
                            f"{min_seq_length(task, max_query_length=c.max_query_length)} tokens {task} needs at least"
                            + ("; lower max_query_length" if task == "qa" else "; use a model with longer positions"))
        c.max_seq_length = min(c.max_seq_length, model.max_position_embeddings)
        return c

    def validate(self) -> None:
        if self.lr_decay_style not in ("correct", "google"):
            raise UserError(f"lr_decay_style {self.lr_decay_style!r} is not one of correct, google")
        if self.init not in ("pretrained", "scratch"):
            raise UserError(f"init {self.init!r} is not one of pretrained, scratch")
        check_precision_and_device(self.precision, self.device, "")
        if self.epochs <= 0 or self.batch_size <= 0 or self.learning_rate < 0 or not 0 <= self.warmup_fraction < 1:
            raise UserError("epochs and batch_size must be positive, learning_rate >= 0, warmup_fraction in [0, 1)")
        if not 0 < self.layerwise_lr_decay <= 1 and self.layerwise_lr_decay != 0:
            raise UserError(f"layerwise_lr_decay must be in (0, 1], got {self.layerwise_lr_decay}")
        if self.log_every <= 0 or self.eval_every < 0:
            raise UserError(f"log_every must be positive and eval_every >= 0, got {self.log_every}, {self.eval_every}")
        if self.max_seq_length < 0 or self.doc_stride <= 0 or self.max_answer_length <= 0 or self.n_best_size <= 0:
            raise UserError("max_seq_length must be >= 0; doc_stride, max_answer_length and n_best_size positive")
        if self.max_query_length < 1:
            raise UserError(f"max_query_length must be >= 1 (64 is usual), got {self.max_query_length}")
        if self.max_skipped_steps < 1:
            raise UserError(f"max_skipped_steps must be >= 1, got {self.max_skipped_steps}")
        check_optimiser_limits(self.learning_rate, self.weight_decay, self.adam_epsilon, self.max_grad_norm, "")


def layer_depths(model: torch.nn.Module) -> dict[str, int]:
    """Depth of every parameter: embeddings 0, encoder layer i -> i + 1, the task head L + 1."""
    L = model.config.num_hidden_layers
    depths = {}
    for name, _ in model.named_parameters():
        if name.startswith("electra.embeddings"):
            depths[name] = 0  # embeddings and embeddings_project
        elif name.startswith("electra.encoder.layer."):
            depths[name] = int(name.split(".")[3]) + 1
        else:
            depths[name] = L + 1
    return depths


def layerwise_lr_scales(model: torch.nn.Module, decay: float, style: str = "correct") -> dict[str, float]:
    """Learning-rate multiplier of each parameter under layer-wise decay ``decay`` (d), L layers.

    correct: head 1, layer i (0-based) d^(L-i) (the top layer d), embeddings d^(L+1).
    google:  head 1, layer i d^(L+1-i) (the top layer d^2), embeddings d^(L+2): Google's ELECTRA code
             counts the head as depth L+2 and so skips one power; keep it only to reproduce their numbers.
    """
    L = model.config.num_hidden_layers
    top = L + 1 if style == "correct" else L + 2
    return {name: 1.0 if depth == L + 1 else decay ** (top - depth) for name, depth in layer_depths(model).items()}


def build_optimizer(model: torch.nn.Module, cfg: FinetuneConfig, device: torch.device) -> torch.optim.AdamW:
    """One AdamW group per (learning-rate scale, decay or not); ``initial_lr`` of each group is its peak lr."""
    scales = layerwise_lr_scales(model, cfg.layerwise_lr_decay, cfg.lr_decay_style)
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        no_decay = name.endswith("bias") or "LayerNorm" in name
        groups.setdefault((scales[name], no_decay), []).append(p)
    param_groups = [{"params": ps, "lr": cfg.learning_rate * s, "initial_lr": cfg.learning_rate * s,
                     "weight_decay": 0.0 if nd else cfg.weight_decay} for (s, nd), ps in groups.items()]
    return torch.optim.AdamW(param_groups, lr=cfg.learning_rate, betas=(0.9, 0.999), eps=cfg.adam_epsilon,
                             fused=fused_adamw(device))


def schedule(step: int, total: int, warmup: int) -> float:
    """Multiplier of the peak lr for the update with 0-based index ``step``: linear warm-up, linear decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def length_bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random,
                            pool_batches: int = 50) -> list[list[int]]:
    """Shuffle, then sort pools of ``pool_batches`` batches by length and cut them into batches (in a random
    order): every example once per epoch, little padding, and still a different mix each epoch."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    pool = batch_size * pool_batches
    for i in range(0, len(order), pool):
        chunk = sorted(order[i:i + pool], key=lengths.__getitem__)
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def rank_slice(batch: list[int], d: Dist) -> list[int]:
    """This rank's contiguous slice of a global batch; sizes differ by at most one, and a slice is empty when
    the batch (an epoch's last, short one) has fewer examples than there are ranks."""
    n = len(batch)
    return batch[n * d.rank // d.world_size: n * (d.rank + 1) // d.world_size]


def collate_padded(features: list[dict], pad_id: int, length: int) -> dict[str, torch.Tensor]:
    """``collate``, padded to ``length``: a rank's slice padded like the whole global batch, so its rows are
    exactly those of the one-process batch (QA's softmax runs over padded positions too: padding changes it)."""
    batch = collate(features, pad_id)
    extra = length - batch["input_ids"].shape[1]
    if extra > 0:
        fill = {"input_ids": pad_id, "labels": IGNORE}  # token types and attention mask: 0
        batch = {k: torch.nn.functional.pad(v, (0, extra), value=fill.get(k, 0)) if v.dim() == 2 else v
                 for k, v in batch.items()}
    return batch


def loss_count(feature: dict) -> int:
    """How many terms a feature adds to its task's mean loss: its labelled tokens (tagging), else one."""
    if "labels" in feature:
        return sum(label != IGNORE for label in feature["labels"])
    return 1


def share_of_loss(task: Task, logits, batch, count: int, total: int) -> torch.Tensor:
    """This rank's share of the global batch's mean loss: its own mean x count / total (``count`` of the
    ``total`` loss terms of the global batch are here), so that the ranks' gradients, summed by DDP, are the
    one-process gradient of the whole batch. In one process count == total and the loss is the task's.

    With nothing to count (a stand-in example on an empty slice) the share is a zero that still reaches
    every parameter: DDP expects a gradient for each of them from every rank.
    """
    if count == 0:
        outs = logits if isinstance(logits, tuple) else (logits,)
        return sum(o.float().sum() for o in outs) * 0.0
    loss = task.loss(logits, batch)
    return loss if count == total else loss * (count / total)


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def non_finite_tensor(state: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor of ``state`` holding a NaN or an infinity, else None."""
    for name, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return name
    return None


def save_finetuned(model, task: Task, tokenizer_dir: Path, out: Path, max_seq_length: int, extra: dict) -> None:
    """A transformers folder (config.json with the head's architecture and labels, model.safetensors,
    tokenizer files) plus task.json, which our evaluate/predict read. Written whole or not at all."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = non_finite_tensor(state)
    if bad is not None:  # the caller keeps only finite evaluations: this would be a bug, not the user's doing
        raise RuntimeError(f"refusing to save a model with non-finite weights ({bad})")
    with AtomicDir(out) as tmp:
        config = model.config.to_hf_dict(type(model).__name__)
        config.update(task.config_fields())
        write_json(tmp / "config.json", config)
        save_safetensors(tmp / "model.safetensors", state, {"format": "pt"})
        for f in sorted(Path(tokenizer_dir).iterdir()):
            if f.is_file() and f.name in TOKENIZER_FILES:
                copy_file(f, tmp / f.name)
        write_json(tmp / TASK_FILE, {**task.state(), "qa_options": task.qa_options,
                                     "max_seq_length": max_seq_length, **extra})


def check_vocabulary(tok, cfg: ModelConfig, where: Path) -> None:
    """Token ids must fit the model's embedding table (a transformers vocab may be padded larger)."""
    if tok.get_vocab_size() > cfg.vocab_size:
        raise UserError(f"{where}: the tokenizer has {tok.get_vocab_size()} tokens but the model's vocab_size is "
                        f"{cfg.vocab_size}; use the tokenizer the model was pre-trained with")


def check_weights(model, encoder_state: dict, where: Path) -> None:
    """Every encoder tensor the model needs is there, with the shape its config.json promises."""
    own = {k: v for k, v in model.state_dict().items() if k.startswith("electra.")}
    missing = [k for k in own if k not in encoder_state]
    if missing:
        raise UserError(f"{where}: the weights lack {missing[0]} (and {len(missing) - 1} more); is it an ELECTRA model?")
    for k, v in own.items():
        if encoder_state[k].shape != v.shape:
            raise UserError(f"{where}: {k} has shape {tuple(encoder_state[k].shape)} but config.json implies "
                            f"{tuple(v.shape)}; the config and the weights do not belong together")


@torch.no_grad()
def run_model(model, task: Task, features: list[dict], pad_id: int, batch_size: int, device: torch.device,
              autocast, progress: bool = False, non_finite: list | None = None) -> list:
    """Task outputs for every feature, in order. Batches are formed from length-sorted features.
    ``non_finite``: a list that gets one entry per batch whose logits hold a NaN or an infinity (tagging's
    outputs are argmax ids, where a NaN no longer shows)."""
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    outputs: list = [None] * len(features)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in tqdm(batches, desc="predict", disable=not progress, unit="batch"):
        batch = collate([features[i] for i in idx], pad_id)
        with autocast():
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                           batch["token_type_ids"].to(device))
        if non_finite is not None and not all(bool(torch.isfinite(part).all())
                                              for part in (logits if isinstance(logits, tuple) else (logits,))):
            non_finite.append(idx)
        for i, out in zip(idx, task.outputs(logits, batch)):
            outputs[i] = out
    return outputs


def evaluate(model, task: Task, examples, features, pad_id, batch_size, device, autocast,
             non_finite: list | None = None) -> tuple[dict, list]:
    outputs = run_model(model, task, features, pad_id, batch_size, device, autocast, non_finite=non_finite)
    return task.metrics(examples, features, outputs), task.predictions(examples, features, outputs)


class _RunLog(MetricsLog):
    """metrics.jsonl of a fine-tuning seed. A failed append is a ``WriteFailed`` (fine-tuning has no --resume:
    the run's folder is removed, or an earlier one kept, as for any other file of the run)."""

    def write(self, record: dict[str, Any]) -> None:
        try:
            self.f.write(json.dumps(record) + "\n")
            self.f.flush()
        except OSError as e:
            raise WriteFailed(self.path, e) from None
        if self.sinks is not None:
            self.sinks.write(record)


def _lower_lr_hint(cfg: FinetuneConfig, model_cfg: ModelConfig) -> str:
    usual = FinetuneConfig().resolve(model_cfg, "classification").learning_rate  # the paper's for this size
    lower = usual if cfg.learning_rate > usual else cfg.learning_rate / 10
    return f"lower learning_rate (now {cfg.learning_rate:g}; try --set learning_rate={lower:g})"


def train_one_seed(task: Task, cfg: FinetuneConfig, model_cfg: ModelConfig, encoder_state: dict | None,
                   train_feats, dev_examples, dev_feats, pad_id: int, out: Path, seed: int,
                   progress: bool = True, d: Dist | None = None, log_cfg: LogConfig | None = None) -> dict[str, Any]:
    """Fine-tune one seed; returns its best dev metrics. Writes out/metrics.jsonl (and, per ``log_cfg``,
    TensorBoard events in out/tensorboard or W&B) and out/best/ (later).

    Under torchrun (``d``) every rank calls it: each trains on its slice of every global batch, rank 0
    evaluates and writes, and every rank returns rank 0's best metrics (``model`` is None on the others).
    """
    d = d or Dist()
    torch.manual_seed(seed)  # the same head on every rank (DDP broadcasts rank 0's anyway)
    rng = random.Random(seed)  # the same batch order on every rank
    device = run_device(cfg.device, d, field="device")
    autocast = autocast_for(device, cfg.precision)
    model = task.build_model(model_cfg)  # random head (and encoder, for init=scratch)
    if encoder_state is not None:
        missing, unexpected = model.load_state_dict(encoder_state, strict=False)
        assert not unexpected and all(not k.startswith("electra.") for k in missing), (missing, unexpected)
    model.to(device)
    optimizer = build_optimizer(model, cfg, device)
    step_fn = parallelize(model, "ddp", d)  # the model itself in one process
    if d.enabled:  # each rank its own dropout masks (the same stream on all would repeat them across slices)
        torch.manual_seed((seed << 16) + d.rank)

    lengths = [len(f["input_ids"]) for f in train_feats]
    steps_per_epoch = max(1, -(-len(train_feats) // cfg.batch_size))
    total = max(1, round(cfg.epochs * steps_per_epoch))
    warmup = round(cfg.warmup_fraction * total)
    eval_every = cfg.eval_every or max(1, steps_per_epoch // 2)
    primary = task.primary_metric
    best: dict[str, Any] = {"score": -float("inf")}
    best_state = None
    # Non-finite steps are skipped (on CUDA the fused AdamW kernel skips them on the device, without a host
    # sync; on CPU the check is free). Every rank sees the same clipped global gradient norm, so all agree.
    skipped_in_row = torch.zeros((), device=device)
    skipped = torch.zeros((), device=device)
    check_every_step = device.type != "cuda"
    log = _RunLog(out / "metrics.jsonl", None, ScalarSinks(log_cfg or LogConfig(), out, None,
                                                           dataclasses.asdict(cfg))) if d.is_main else None
    bar = tqdm(total=total, desc=f"seed {seed}", disable=not (progress and d.is_main), unit="step",
               dynamic_ncols=True)
    try:
        step, epoch, t0 = 0, 0, time.perf_counter()
        while step < total:
            for global_idx in length_bucketed_batches(lengths, cfg.batch_size, rng):
                if step >= total:
                    break
                step_fn.train()
                # Counted on the host from the features: no collective needed for the global normalisation.
                total_count = sum(loss_count(train_feats[i]) for i in global_idx)
                idx = rank_slice(global_idx, d)
                count = sum(loss_count(train_feats[i]) for i in idx)
                feats = [train_feats[i] for i in idx or global_idx[:1]]  # an empty slice runs a stand-in, weighted 0
                batch = collate_padded(feats, pad_id, max(lengths[i] for i in global_idx))  # one process: collate
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                for g in optimizer.param_groups:
                    g["lr"] = g["initial_lr"] * schedule(step, total, warmup)
                with autocast():
                    logits = step_fn(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                loss = share_of_loss(task, logits, batch, count, total_count)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # DDP sums the ranks' gradients: every rank holds the whole batch's gradient
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                bad = ~torch.isfinite(grad_norm)  # a non-finite loss makes the gradient norm non-finite too
                if not d.enabled:  # (under torchrun only the norm, the same on every rank, decides)
                    bad = bad | ~torch.isfinite(loss.detach())
                if device.type == "cuda" and optimizer.defaults.get("fused"):
                    optimizer.found_inf = bad.float()  # the fused kernel skips the whole update when set
                    optimizer.step()
                elif not bool(bad):
                    optimizer.step()
                skipped_in_row.copy_((skipped_in_row + 1) * bad)
                skipped.add_(bad.float())
                step += 1
                bar.update(1)
                logging = step % cfg.log_every == 0 or step == total
                evaluating = step % eval_every == 0 or step == total
                if logging:
                    # The ranks' shares sum to the global batch's mean loss; a host sync (and, under torchrun, a
                    # collective on every rank) only at logging steps.
                    loss_value = all_reduce_sum(loss.detach().float().clone(), d).item()
                    bar.set_postfix(loss=f"{loss_value:.3f}", best=f"{best['score']:.4g}")
                    if log is not None:
                        log.write({"step": step, "epoch": epoch, "loss": loss_value,
                                   "lr": optimizer.param_groups[0]["lr"], "skipped_steps": int(skipped)})
                if (check_every_step or logging or evaluating) and int(skipped_in_row) >= cfg.max_skipped_steps:
                    if log is not None:
                        log.write({"step": step, "event": "stopped", "reason": "non-finite loss or gradients"})
                    raise UserError(f"seed {seed}: the last {int(skipped_in_row)} steps (to step {step}) had a "
                                    f"non-finite loss or gradients and were skipped, so the run stopped and no model "
                                    f"was saved; {_lower_lr_hint(cfg, model_cfg)} (or check the data)")
                if evaluating:
                    # Rank 0 evaluates the whole dev set alone (the others wait in the broadcast) and decides;
                    # every rank then holds the same ``best``. Only a finite evaluation of finite weights counts:
                    # a diverged model can still score (argmax of NaN logits is class 0), and is never saved.
                    if d.is_main:
                        non_finite: list = []
                        metrics, preds = evaluate(model, task, dev_examples, dev_feats, pad_id, 64, device, autocast,
                                                  non_finite=non_finite)
                        label, share = task.majority_fraction(preds)
                        record = {"step": step, "event": "eval", **metrics, "majority_prediction": label,
                                  "majority_share": share, "seconds": round(time.perf_counter() - t0, 1)}
                        state = None
                        finite = not non_finite and math.isfinite(metrics[primary])
                        if finite and metrics[primary] > best["score"]:
                            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                            finite = non_finite_tensor(state) is None
                        if not finite:
                            record["non_finite"] = True  # not a candidate for the best model
                        log.write(record)
                        if finite and state is not None:
                            best = {"score": metrics[primary], "step": step, "metrics": metrics,
                                    "majority_prediction": label, "majority_share": share}
                            best_state = state
                    best = broadcast_object(best, d)
            epoch += 1
    finally:
        bar.close()
        if log is not None:
            log.close()
    skipped_steps = int(skipped)
    if "step" not in best:  # every rank holds rank 0's best: all stop here together
        raise UserError(f"seed {seed}: no evaluation of the dev set had finite outputs and weights (the training "
                        f"diverged; {skipped_steps} steps with a non-finite loss were skipped), so no model was "
                        f"saved; {_lower_lr_hint(cfg, model_cfg)}")
    if skipped_steps and d.is_main:
        print(f"warning: seed {seed}: {skipped_steps} steps had a non-finite loss or gradients and were skipped",
              file=sys.stderr)
    if d.is_main:
        model.load_state_dict(best_state)
    best["model"] = model.cpu() if d.is_main else None
    return best


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values)}


def report_warnings(task: Task, what: str, show: bool = True) -> None:
    """Print the task's counted warnings for file ``what`` (``show``: this process prints) and reset them."""
    for key, n in task.warnings.items() if show else ():
        hint = " (raise --set max_seq_length=...)" if key == "truncated" else ""
        name = "texts longer than max_seq_length, truncated" if key == "truncated" else key
        print(f"warning: {what}: {n} {name}{hint}", file=sys.stderr)
    task.warnings.clear()


def check_output_folder(out: Path, inputs: list[Path], overwrite: bool = False) -> bool:
    """Whether ``out`` may receive a fine-tuning run; True when it holds an earlier one that the run will replace.

    Refused with one line, before anything is read or written: a file (or a path under one); a non-empty folder
    that is not an earlier `electra finetune` output (the ``.electra`` marker and finetune.json), unless
    ``overwrite``; a folder that is, or holds, one of the command's inputs (the model, train or dev file).
    """
    out = Path(out)
    claim_output_folder(out, "--out", overwrite=True)  # a file in the way (ownership is decided below)
    target = out.resolve()
    for given in inputs:
        given = Path(given).resolve()
        if given == target or target in given.parents:
            raise UserError(f"{out}: {'is' if given == target else 'holds'} {given}, an input of this command, which "
                            f"the run would replace; choose another --out")
    if not (out.is_dir() and any(out.iterdir())):
        return False
    ours = is_owned(out) and (out / "finetune.json").is_file()
    if not ours and not overwrite:
        raise UserError(f"{out}: the output folder already exists and is not an earlier `electra finetune` output "
                        f"(no {OWNER_MARKER} marker and finetune.json); choose another --out, or pass --overwrite to "
                        f"replace it")
    return True


class OutputFolder:
    """``with OutputFolder(out, replacing, main) as folder:`` where a fine-tuning run writes its files.

    A new or empty ``out`` is written in place (its metrics and TensorBoard logs can be watched while it runs);
    an earlier run's folder (``replacing``) is built in a hidden sibling and swapped in when complete
    (``AtomicDir``), so it stays as it was, and usable, until then. On any error what this run wrote is removed
    (folders it created included) and a file-system failure becomes ``WriteFailed(out)``: one line, the disk
    named. Only the main process writes; the others get ``out`` and write nothing.
    """

    def __init__(self, out: Path, replacing: bool, main: bool = True):
        self.out, self.replacing, self.main = Path(out), replacing, main
        self.atomic: AtomicDir | None = None
        self.created: Path | None = None  # the first folder of ``out``'s path that this run created

    def __enter__(self) -> Path:
        if not self.main:
            return self.out
        if self.replacing:
            self.atomic = AtomicDir(self.out)
            return self.atomic.__enter__()
        missing = [p for p in (self.out, *self.out.parents) if not p.exists()]
        self.created = missing[-1] if missing else None
        try:
            make_folder(self.out)
        except BaseException:
            self._remove_written()
            raise
        return self.out

    def _remove_written(self) -> None:
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
        elif self.out.is_dir():  # it existed, empty: empty it again
            for child in self.out.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.main:
            return
        if self.atomic is not None:
            self.atomic.__exit__(exc_type, exc, tb)  # removes the new folder on an error; WriteFailed(out)
            return
        if exc_type is None:
            return
        self._remove_written()
        if isinstance(exc, WriteFailed):
            raise WriteFailed(self.out, OSError(exc.errno, exc.reason)) from None
        if isinstance(exc, OSError):
            raise WriteFailed(self.out, exc) from None


def finetune(model_path: Path, task_name: str, train_path: Path, dev_path: Path, out: Path, seeds: int = 1,
             overrides: list[str] | None = None, reader_options: dict | None = None,
             progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Fine-tune MODEL on a task for ``seeds`` seeds; keep each seed's best dev checkpoint; summarise.

    ``out`` must be new, empty or an earlier fine-tuning output (replaced when this run completes); any other
    folder is refused unless ``overwrite``. Under torchrun every rank runs it (and returns the same results);
    rank 0 alone prints and writes.
    """
    d = init_distributed()
    try:
        return _finetune(d, model_path, task_name, train_path, dev_path, out, seeds, overrides, reader_options,
                         progress, overwrite)
    finally:
        close_distributed(d)


def _finetune(d: Dist, model_path: Path, task_name: str, train_path: Path, dev_path: Path, out: Path, seeds: int,
              overrides: list[str] | None, reader_options: dict | None, progress: bool,
              overwrite: bool = False) -> dict[str, Any]:
    say = print if d.is_main else (lambda *args, **kwargs: None)
    out = Path(out)
    replacing = check_output_folder(out, [Path(model_path), Path(train_path), Path(dev_path)], overwrite)
    barrier(d)  # every rank has looked at --out before rank 0 writes into it
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    cfg, log_cfg = FinetuneConfig(), LogConfig()
    set_fields({"finetune": cfg, "log": log_cfg}, overrides or [])
    cfg.validate()
    check_types(log_cfg, "log.")
    model_cfg, encoder_state, tok_dir = load_encoder_source(Path(model_path))
    cfg = cfg.resolve(model_cfg, task_name)
    tok = load_tokenizer(tok_dir)
    check_vocabulary(tok, model_cfg, tok_dir)
    pad_id = special_token_ids(tok)["pad"]

    task = make_task(task_name, {k: v for k, v in (reader_options or {}).items() if v is not None})
    task.qa_options = {k: getattr(cfg, k) for k in ("doc_stride", "max_query_length", "n_best_size",
                                                     "max_answer_length", "null_score_diff_threshold")}
    train_examples = task.read_train(Path(train_path))
    dev_examples = task.read_eval(Path(dev_path))
    train_feats = task.featurize(train_examples, tok, cfg.max_seq_length, training=True)
    report_warnings(task, str(train_path), d.is_main)
    dev_feats = task.featurize(dev_examples, tok, cfg.max_seq_length, training=False)
    report_warnings(task, str(dev_path), d.is_main)
    if not train_feats:
        raise UserError(f"{train_path}: no usable training examples")

    check_weights(task.build_model(model_cfg), encoder_state, Path(model_path))

    source = {"model": str(model_path), "init": cfg.init, "tokenizer": str(tok_dir)}
    # What finetune.json holds, as read back (the model card is made from it).
    record = json.loads(json.dumps({"config": dataclasses.asdict(cfg), "log": dataclasses.asdict(log_cfg),
                                    "task": task.state(), "source": source, "train": str(train_path),
                                    "dev": str(dev_path), "world_size": d.world_size}))
    with OutputFolder(out, replacing, d.is_main) as folder:
        if d.is_main:
            mark_owned(folder, "electra finetune")
            write_json(folder / "finetune.json", record)
        say(f"{task_name}: {len(train_examples)} train / {len(dev_examples)} dev examples, "
            f"{task.num_labels} outputs, lr {cfg.learning_rate:g}, layer decay {cfg.layerwise_lr_decay:g}, "
            f"{cfg.epochs:g} epochs of batch {cfg.batch_size}, init {cfg.init}"
            + (f", split over {d.world_size} processes" if d.enabled else ""))
        if replacing:
            say(f"{out} holds an earlier fine-tuning run: it is replaced when this one completes (until then the "
                f"new run is written in {folder})")

        per_seed = []
        best_overall = None
        for k in range(seeds):
            seed = cfg.seed + k
            seed_dir = folder / f"seed-{seed}"
            if d.is_main:
                make_folder(seed_dir)
            result = train_one_seed(task, cfg, model_cfg, None if cfg.init == "scratch" else encoder_state,
                                    train_feats, dev_examples, dev_feats, pad_id, seed_dir, seed, progress, d,
                                    log_cfg)
            model = result.pop("model")
            if d.is_main:
                save_finetuned(model, task, tok_dir, seed_dir / "best", cfg.max_seq_length,
                               {"seed": seed, "best_step": result["step"], "dev": result["metrics"], "source": source})
            collapsed = task.name != "qa" and result["majority_share"] >= 0.99
            if collapsed:
                say(f"warning: seed {seed} collapsed: it predicts {result['majority_prediction']!r} for "
                    f"{result['majority_share']:.1%} of dev; try a lower learning rate or another seed",
                    file=sys.stderr)
            row = {"seed": seed, "best_step": result["step"], "collapsed": collapsed, **result["metrics"]}
            per_seed.append(row)
            say(f"seed {seed}: best dev {task.primary_metric} {result['score']:.4f} at step {result['step']}"
                + ("  (collapsed to the majority class)" if collapsed else ""))
            if best_overall is None or result["score"] > best_overall[0]:
                best_overall = (result["score"], seed)

        keys = [k for k in per_seed[0]
                if k not in ("seed", "best_step", "collapsed") and isinstance(per_seed[0][k], (int, float))]
        results = {"task": task_name, "primary_metric": task.primary_metric, "seeds": per_seed,
                   "summary": {k: _summary([r[k] for r in per_seed]) for k in keys},
                   "collapsed_seeds": [r["seed"] for r in per_seed if r["collapsed"]],
                   "model": f"seed-{best_overall[1]}/best"}
        if d.is_main:
            best_dir = folder / f"seed-{best_overall[1]}" / "best"
            with AtomicDir(folder / "model") as tmp:
                for f in sorted(best_dir.iterdir()):
                    copy_file(f, tmp / f.name)
                write_text(tmp / CARD, finetuned_card(out, results, record))
            write_json(folder / "results.json", results)
    barrier(d)  # the folder is complete when finetune returns, on any rank
    s = results["summary"][task.primary_metric]
    say(f"dev {task.primary_metric} over {seeds} seed(s): median {s['median']:.4f}, mean {s['mean']:.4f}, "
        f"std {s['std']:.4f}; best seed's model in {out / 'model'}")
    return results
