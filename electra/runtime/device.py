"""What the device decides for both training loops: autocast precision and the fused AdamW kernel."""

from __future__ import annotations

import contextlib

import torch


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA by default, plain fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def fused_adamw(device: torch.device) -> bool:
    """Whether AdamW runs as torch's fused kernel: on CUDA (one kernel for all parameters) and on CPU (one
    vectorised pass per tensor; about 4x faster than the default per-parameter loop, see
    benchmarks/RESULTS.md). transformers' Trainer uses the same kernel by default (adamw_torch_fused)."""
    return device.type in ("cuda", "cpu")
