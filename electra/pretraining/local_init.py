"""A locality initialisation: the first layer's attention heads start out reading a token's neighbours.

Why: at the usual initialisation (truncated normal, std 0.02) attention is uniform, so the one neighbour
that tells whether a token fits (or what a masked token is) is 1/T of what each position sees. Small models
then sit on the unigram plateau for thousands of steps before attention learns to look next door
(docs/finetune.md: the masked LM and the detector alike). Here the weights start with that skill built in,
and training is left to learn what to do with the neighbours. Only the starting values change, so the
checkpoints are plain transformers ELECTRA models.

The construction (E embedding size, H hidden, F = ``frequencies``):

- The word embeddings live in the first E − 2F dimensions, and the position embeddings in the last 2F:
  p_i = a · [cos(ω_f i), sin(ω_f i)]_f, with F frequencies ω_f spread over (0, π), so that
  Σ_f cos(ω_f d) is F at d = 0 and small for every other offset d within the sequence.
- Layer 0's query and key read those 2F features. For a head meant to read the token at offset s (−1: the
  previous one, +1: the next), the query rotates each (cos, sin) pair by ω_f·s, so q_i · k_j ∝
  Σ_f cos(ω_f (i + s − j)), which peaks at j = i + s: after the softmax nearly all the weight sits there.
- That head's value copies the word dimensions, and the attention output projection adds them back into
  the word dimensions of the residual stream at a fraction ``mix`` of its norm: after layer 0's attention,
  each position holds its own token and its neighbours'.

Heads beyond the ones given offsets keep their random initialisation, as do all other weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from electra.model import ElectraModel

DEFAULT_OFFSETS = (-1, 1)


@torch.no_grad()
def init_local_attention(encoder: ElectraModel, frequencies: int = 16, offsets: tuple[int, ...] = DEFAULT_OFFSETS,
                         sharpness: float = 12.0, mix: float = 0.5, seed: int = 0,
                         embeddings: nn.Module | None = None) -> None:
    """Re-initialise ``encoder`` (an ElectraModel) in place so that layer 0's heads h = 0, 1, ... attend to
    the tokens at ``offsets[h]``. ``sharpness``: the attention logit of the target position above the mean
    (12: ~99% of the weight). ``mix``: the neighbours' share of the residual stream's norm after the layer.
    ``embeddings``: the module whose tables to reshape, when the encoder reads tables it does not own (GDES:
    the generator's, which the discriminator reads plus a delta that starts at zero)."""
    cfg = encoder.config
    E, H, nh = cfg.embedding_size, cfg.hidden_size, cfg.num_attention_heads
    hs = H // nh
    offsets = tuple(offsets)[:nh]
    if 2 * frequencies > hs or 4 * frequencies > E or H < E:
        raise ValueError(f"{frequencies} frequencies need heads of at least {2 * frequencies} dimensions, "
                         f"embeddings of at least {4 * frequencies} and a hidden size >= the embedding size")
    g = torch.Generator().manual_seed(seed)
    P, W = 2 * frequencies, E - 2 * frequencies  # position and word dimensions of the embedding space
    omega = torch.sort(torch.rand(frequencies, generator=g) * (math.pi - 0.2) + 0.1).values  # (F,)

    emb = embeddings if embeddings is not None else encoder.embeddings
    std = cfg.initializer_range
    words = emb.word_embeddings.weight  # (V, E)
    words[:, W:] = 0.0
    # Position features with the same expected norm as a word vector, so LayerNorm keeps both.
    amplitude = std * math.sqrt(W / frequencies)
    i = torch.arange(cfg.max_position_embeddings, dtype=torch.float32)[:, None]  # (T, 1)
    positions = torch.zeros_like(emb.position_embeddings.weight)  # (T, E)
    positions[:, W::2] = amplitude * torch.cos(omega * i)
    positions[:, W + 1::2] = amplitude * torch.sin(omega * i)
    emb.position_embeddings.weight.copy_(positions)
    emb.token_type_embeddings.weight[:, W:] = 0.0

    # After the embedding LayerNorm a vector has norm ~sqrt(E), half of it from the position features.
    if hasattr(encoder, "embeddings_project"):  # E != H: carry both subspaces into the hidden size unchanged
        project = encoder.embeddings_project
        nn.init.zeros_(project.bias)
        project.weight.zero_()
        project.weight[:E, :E] = torch.eye(E)
    pos_dims = torch.arange(W, E)  # where the position features sit in the hidden space (E <= H here)
    feature = math.sqrt(E / 2 / frequencies)  # |one (cos, sin) pair| after LayerNorm

    attn = encoder.encoder.layer[0].attention
    q, k, v, out = attn.self.query, attn.self.key, attn.self.value, attn.output.dense
    for h, s in enumerate(offsets):
        rows = torch.arange(h * hs, h * hs + P)  # this head's first 2F query/key dimensions
        q.weight[h * hs:(h + 1) * hs] = 0.0
        k.weight[h * hs:(h + 1) * hs] = 0.0
        # logit(i, j) = q_i . k_j / sqrt(hs) = c^2 * feature^2 * sum_f cos(w_f (i + s - j)) / sqrt(hs);
        # its peak (F terms of 1) is set to ``sharpness``.
        c = math.sqrt(sharpness * math.sqrt(hs) / (frequencies * feature ** 2))
        for f in range(frequencies):
            cos_dim, sin_dim = pos_dims[2 * f], pos_dims[2 * f + 1]
            a = omega[f] * s  # rotate the query's pair by +w_f s: it then matches the key of position i + s
            q.weight[rows[2 * f], cos_dim], q.weight[rows[2 * f], sin_dim] = c * math.cos(a), -c * math.sin(a)
            q.weight[rows[2 * f + 1], cos_dim], q.weight[rows[2 * f + 1], sin_dim] = c * math.sin(a), c * math.cos(a)
            k.weight[rows[2 * f], cos_dim] = c
            k.weight[rows[2 * f + 1], sin_dim] = c
        q.bias[h * hs:(h + 1) * hs] = 0.0
        k.bias[h * hs:(h + 1) * hs] = 0.0
        # The value: a random orthogonal map from the word dimensions into this head; the output projection
        # maps it back (its transpose), scaled so the neighbours carry ``mix`` of the stream.
        n = min(W, hs)
        basis = torch.linalg.qr(torch.randn(W, n, generator=g))[0]  # (W, n), orthonormal columns
        v.weight[h * hs:(h + 1) * hs] = 0.0
        v.weight[h * hs:h * hs + n, :W] = basis.T
        v.bias[h * hs:(h + 1) * hs] = 0.0
        out.weight[:, h * hs:(h + 1) * hs] = 0.0
        out.weight[:W, h * hs:h * hs + n] = basis * mix / math.sqrt(len(offsets))
    nn.init.zeros_(out.bias)
