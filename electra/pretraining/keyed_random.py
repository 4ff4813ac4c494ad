"""Randomness as a function of ``(seed, example key, position)``: a counter-based hash, not a draw from a global
random stream.

Everything random in pre-training goes through ``keyed_uniform``: which tokens are selected, which become
``[MASK]`` or a random token, the Gumbel noise of the sampler, the whole-word and span draws and the yardstick's
replacements. An example is therefore masked and sampled the same way whatever the batch it lands in, the
micro-batch split, the number of processes or the step a run was resumed at (docs/design.md, "Randomness keyed
by example").

Each use has its own salt, and all of them are listed here, so no two uses share one.
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF
SALT_SELECT, SALT_MASK_TOKEN, SALT_GUMBEL = 0x1B873593, 0x2C1B3C6D, 0x297A2D39  # masking.py, replaced_tokens.py
SALT_RANDOM_TOKEN = 0x3A8F05C5                                                 # masking.py (BERT's random token)
SALT_WORD, SALT_SPAN_LENGTH, SALT_SPAN_SLOT = 0x5BD1E995, 0x68E31DA4, 0x1B56C4E9  # masking.py (words, spans)
SALT_YARDSTICK = 0x51ED270B                                                    # yardstick.py


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two multiply-xorshift rounds) on int64 tensors holding values < 2**32.

    The multiplier is below 2**31, so no product overflows int64 and CPU and CUDA agree bit for bit.
    """
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def fold64(k: torch.Tensor) -> torch.Tensor:
    """Hash an int64 key of any size into 32 bits (example keys can exceed 2**32)."""
    return _mix32((k & _MASK32) ^ _mix32((k >> 32) & _MASK32))


def keyed_uniform(seed: int, salt: int, *keys: torch.Tensor) -> torch.Tensor:
    """Uniform floats in (0, 1), float32, one per element of the broadcast of ``keys``.

    Each key is an int64 tensor of values < 2**32 (pass wider keys through ``fold64``). Keys are mixed
    in one at a time, so put small tensors first and the widest broadcast last: only the last mix runs
    over the full output. The seed is mixed on the host: no host-to-device copy, no synchronisation.
    """
    h: torch.Tensor | int = _mix32_int((seed & _MASK32) ^ salt ^ _mix32_int(seed >> 32))
    for k in keys:
        h = _mix32(k ^ h)
    # 24 random bits -> (0, 1); the half-step offset keeps log(u) finite.
    return ((h >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def _mix32_int(x: int) -> int:
    """_mix32 on a Python int (for the seed)."""
    x &= _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x
