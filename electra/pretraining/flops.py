"""Analytic FLOPs of an ELECTRA pre-training step, for throughput and MFU reporting.

Conventions (the usual ones, as in the PaLM/Chinchilla appendices):

- Only matrix multiplications are counted; a product of an (m, k) and a (k, n) matrix
  costs ``2·m·n·k`` FLOPs (one multiply and one add per term).
- Elementwise work is ignored: biases, GELU, LayerNorm, softmax, dropout, residual
  adds, the embedding look-ups (gathers), the Gumbel noise and the losses. For
  ELECTRA-Small these are a few percent of the total.
- Training = 3 × forward: the backward pass of a matmul is two matmuls of the same
  size (gradient w.r.t. the input and w.r.t. the weight). Activation recomputation
  (e.g. flash attention's backward) is not counted: these are *model* FLOPs.
- Attention is counted over the full ``T × T`` score matrix, padding or not.

Shapes: B batch, T sequence length, N = B·T tokens, E embedding size, H hidden size,
I intermediate (FFN) size, L layers, V vocabulary, M positions where the generator's
LM head runs.

Per encoder (``encoder_forward_flops``), forward::

    embeddings_project   2·N·E·H                  (only when E != H)
    per layer:
      qkv                3 · 2·N·H·H               query, key, value projections
      attention_scores   2·N·T·H                   Q·Kᵀ: B·nh matmuls of (T, hs) x (hs, T)
      attention_values   2·N·T·H                   softmax(QKᵀ)·V: B·nh of (T, T) x (T, hs)
      attention_output   2·N·H·H                   output projection
      ffn                2·N·H·I + 2·N·I·H         intermediate and output dense
    total = [2·N·E·H] + L·(8·N·H² + 4·N·T·H + 4·N·H·I)

Heads, forward::

    discriminator head   2·N·H·H + 2·N·H           dense H->H, then dense_prediction H->1
    generator head       2·M·Hg·E + 2·M·E·V        dense Hg->E, then the tied V-way output layer

Our step (``pretrain_flops_per_step``) runs the generator head at the M selected
positions only (M ≈ mask_prob·N); a transformers-style step
(``hf_pretrain_flops_per_step``) runs it at every position (M = N), which for
ELECTRA-Small is about a quarter of the whole step.
"""

from __future__ import annotations

import dataclasses

from electra.config import ModelConfig, PretrainConfig
from electra.errors import UserError


def encoder_forward_flops(model_cfg: ModelConfig, batch: int, seq: int) -> dict[str, int]:
    """Forward matmul FLOPs of one encoder (embeddings projection + L layers) on a (batch, seq) input.

    Returns the parts and their ``total``::

        total = [2·N·E·H if E != H] + L · (6·N·H² + 2·N·T·H + 2·N·T·H + 2·N·H² + 4·N·H·I)
        N = batch · seq
    """
    N, T = batch * seq, seq
    m = model_cfg
    E, H, I, L = m.embedding_size, m.hidden_size, m.intermediate_size, m.num_hidden_layers
    parts = {
        "embeddings_project": 2 * N * E * H if E != H else 0,
        "qkv": L * 3 * 2 * N * H * H,
        "attention_scores": L * 2 * N * T * H,   # sum over heads of 2·T·T·hs per sequence = 2·T·T·H
        "attention_values": L * 2 * N * T * H,
        "attention_output": L * 2 * N * H * H,
        "ffn": L * (2 * N * H * I + 2 * N * I * H),
    }
    parts["total"] = sum(parts.values())
    return parts


def discriminator_head_flops(model_cfg: ModelConfig, tokens: int) -> int:
    """dense (H -> H) then dense_prediction (H -> 1) at every token: 2·N·H² + 2·N·H."""
    H = model_cfg.hidden_size
    return 2 * tokens * H * H + 2 * tokens * H


def generator_head_flops(gen_cfg: ModelConfig, positions: int) -> int:
    """dense (Hg -> E) then the tied output layer (E -> V) at ``positions`` rows: 2·M·Hg·E + 2·M·E·V."""
    E, H, V = gen_cfg.embedding_size, gen_cfg.hidden_size, gen_cfg.vocab_size
    return 2 * positions * H * E + 2 * positions * E * V


def _step_flops(cfg: PretrainConfig, batch_size: int, seq_len: int, lm_head_rows: int) -> dict:
    gen_cfg = cfg.generator_model_config()
    N = batch_size * seq_len
    gen_enc = encoder_forward_flops(gen_cfg, batch_size, seq_len)["total"]
    gen_head = generator_head_flops(gen_cfg, lm_head_rows)
    disc_enc = encoder_forward_flops(cfg.model, batch_size, seq_len)["total"]
    disc_head = discriminator_head_flops(cfg.model, N)
    forward = gen_enc + gen_head + disc_enc + disc_head
    return {
        "generator_encoder": gen_enc,
        "generator_head": gen_head,
        "discriminator_encoder": disc_enc,
        "discriminator_head": disc_head,
        "generator_forward": gen_enc + gen_head,
        "discriminator_forward": disc_enc + disc_head,
        "forward": forward,
        "train": 3 * forward,
        "tokens": N,
        "lm_head_rows": lm_head_rows,
        "train_per_token": 3 * forward / N,
    }


def pretrain_flops_per_step(cfg: PretrainConfig, batch_size: int, seq_len: int,
                            num_selected: int | None = None) -> dict:
    """FLOPs of one optimiser step of *our* ELECTRA step (LM head at the selected positions only).

    ``num_selected`` (M) defaults to ``round(mask_prob · batch_size · seq_len)``; our step actually
    runs the head on ``batch_size · max_selected(seq_len)`` slots, pass that for the work done::

        forward = enc(gen) + 2·M·Hg·E + 2·M·E·V + enc(disc) + 2·N·H² + 2·N·H
        train   = 3 · forward

    Returns a dict of ints (``generator_encoder``, ``generator_head``, ``discriminator_encoder``,
    ``discriminator_head``, ``generator_forward``, ``discriminator_forward``, ``forward``, ``train``,
    ``tokens``, ``lm_head_rows``) and the float ``train_per_token``. Matmuls only; elementwise ops ignored.
    """
    if num_selected is None:
        num_selected = round(cfg.train.mask_prob * batch_size * seq_len)
    return _step_flops(cfg, batch_size, seq_len, num_selected)


def hf_pretrain_flops_per_step(cfg: PretrainConfig, batch_size: int, seq_len: int) -> dict:
    """FLOPs of one step assembled from transformers' classes, whose generator computes V-way logits at
    every position (M = N = batch_size · seq_len); same keys as ``pretrain_flops_per_step``::

        forward = enc(gen) + 2·N·Hg·E + 2·N·E·V + enc(disc) + 2·N·H² + 2·N·H
        train   = 3 · forward
    """
    return _step_flops(cfg, batch_size, seq_len, batch_size * seq_len)


def training_flops_per_step(cfg: PretrainConfig, seq_len: int, batch_size: int | None = None) -> dict:
    """Model FLOPs of one optimiser step of ``cfg`` (``batch_size`` rows, default ``cfg.train.batch_size``, of
    ``seq_len`` tokens) for any
    ``train.objective``, forward + backward (3 × forward). M = mask_prob · N selected positions::

        electra, electra15   enc(gen) + genhead(M) + enc(disc) + dischead(N)
        mlm                  enc(disc) + mlmhead_disc(M)                        (no generator)
        hybrid               enc(disc) + mlmhead_disc(M) + dischead(N)         (one network, one pass)
        replace_mlm          enc(gen) + genhead(M) + enc(disc) + mlmhead_disc(M)
        all_tokens_mlm       enc(gen) + genhead(M) + enc(disc) + mlmhead_disc(N) + copyhead(N)

    where mlmhead_disc is the discriminator-sized network's LM head (dense H -> E, tied E -> V) and the
    copy head has the shape of the discriminator head. Returns ``forward``, ``train`` and
    ``train_per_token``.

    ``train.algorithm``: ``adversarial`` costs as ``joint`` (REINFORCE backpropagates through the same generator
    graph as the MLM loss; the log-softmax and rewards are elementwise). ``two_stage`` has two step costs, also
    returned: ``stage_one`` = 3·gen (the generator alone, forward and backward) for the first n =
    ``two_stage_switch_step()`` steps, then ``stage_two`` = gen + 3·disc (the frozen generator runs forward
    only). Its ``train`` is the average over the run, (n·stage_one + (max_steps − n)·stage_two) / max_steps;
    ``training_flops`` counts each step at its own cost.
    """
    B, objective = batch_size or cfg.train.batch_size, cfg.train.objective
    N = B * seq_len
    M = round(cfg.train.mask_prob * N)
    disc_enc = encoder_forward_flops(cfg.model, B, seq_len)["total"]
    if objective == "mlm":
        forward = disc_enc + generator_head_flops(cfg.model, M)
    elif objective == "hybrid":  # one encoder pass, both heads: the LM head at M, the detector at every token
        forward = disc_enc + generator_head_flops(cfg.model, M) + discriminator_head_flops(cfg.model, N)
    else:
        gen_cfg = cfg.generator_model_config()
        generator = encoder_forward_flops(gen_cfg, B, seq_len)["total"] + generator_head_flops(gen_cfg, M)
        head = {"electra": discriminator_head_flops(cfg.model, N),
                "electra15": discriminator_head_flops(cfg.model, N),
                "replace_mlm": generator_head_flops(cfg.model, M),
                "all_tokens_mlm": generator_head_flops(cfg.model, N) + discriminator_head_flops(cfg.model, N)}[objective]
        forward = generator + disc_enc + head
        if cfg.train.algorithm == "two_stage":
            n, steps = cfg.train.two_stage_switch_step(), cfg.train.max_steps
            stage_one, stage_two = 3 * generator, generator + 3 * (disc_enc + head)
            train = (n * stage_one + (steps - n) * stage_two) / steps
            return {"forward": forward, "train": train, "tokens": N, "train_per_token": train / N,
                    "stage_one": stage_one, "stage_two": stage_two, "switch_step": n}
    return {"forward": forward, "train": 3 * forward, "tokens": N, "train_per_token": 3 * forward / N}


def _steps_flops(cfg: PretrainConfig, seq_len: int, batch_size: int, start: int, end: int) -> int | float:
    """FLOPs of steps [start, end) at ``batch_size`` × ``seq_len``: ``train`` each, or for ``two_stage``
    stage_one before the switch step n and stage_two from it."""
    per = training_flops_per_step(cfg, seq_len, batch_size)
    if "switch_step" not in per:
        return (end - start) * per["train"]
    before_switch = max(0, min(end, per["switch_step"]) - start)
    return before_switch * per["stage_one"] + (end - start - before_switch) * per["stage_two"]


def training_flops(cfg: PretrainConfig, seq_len: int, steps: int) -> int | float:
    """Model FLOPs of the first ``steps`` optimiser steps of ``cfg``: ``steps · train``, or for ``two_stage``
    min(steps, n)·stage_one + max(0, steps − n)·stage_two.

    Steps of a sequence-length warm-up count at their window length w, with ceil(seq_len / w) windows per
    example: the same linear work, less attention (nominal: the padding-only windows dropped at run time
    are counted)."""
    total, done = 0, 0
    for start, end, window in cfg.train.window_stages(seq_len):
        if start >= steps:
            break
        done = min(end, steps)
        total += _steps_flops(cfg, window, cfg.train.batch_size * -(-seq_len // window), start, done)
    return total + _steps_flops(cfg, seq_len, cfg.train.batch_size, done, max(done, steps))


def steps_for_budget(cfg: PretrainConfig, seq_len: int, budget: float) -> int:
    """``max_steps`` for a FLOPs budget: the most whole steps whose ``training_flops`` fit in it (at least 1).

    For ``two_stage`` the switch step n depends on the run's length when it is "half" (0), and a sequence-length
    warm-up's steps cost less than the rest: then the largest ``max_steps`` whose run fits is found by bisection.
    """
    t = cfg.train
    if t.algorithm != "two_stage" and not t.short_seq_steps:
        return max(1, int(budget // training_flops_per_step(cfg, seq_len)["train"]))

    def run_cost(steps: int) -> float:
        trial = PretrainConfig(preset=cfg.preset, model=cfg.model, generator=cfg.generator,
                               train=dataclasses.replace(t, max_steps=steps))
        return training_flops(trial, seq_len, steps)

    if t.algorithm == "two_stage":
        lo = t.two_stage_generator_steps + 1 if t.two_stage_generator_steps else 2  # the shortest two-stage run
        if run_cost(lo) > budget:
            raise UserError(f"train.flops_budget {budget:.4g} is less than the shortest two-stage run "
                            f"({lo} steps, {run_cost(lo):.4g} FLOPs); raise the budget or lower "
                            f"train.two_stage_generator_steps")
    else:  # a sequence-length warm-up: its steps cost less than the later ones
        lo = 1
        if run_cost(lo) > budget:
            return 1
    hi = lo
    while run_cost(hi * 2) <= budget:  # run_cost grows with steps
        hi *= 2
    hi *= 2  # run_cost(lo) <= budget < run_cost(hi) from here on
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if run_cost(mid) <= budget else (lo, mid)
    return lo
