"""One pre-training batch, from the shards to what a step trains on: the stream (this rank's share of the next
global batch), the windows of a sequence-length warm-up, and the masking (which positions the step predicts and
what the generator sees there). All of it is randomness keyed by example.

**Keyed randomness.** Everything random in pre-training goes through ``keyed_uniform``, a counter-based hash of
``(seed, salt, example key, position)``, not a draw from a global random stream: which tokens are selected, which
become ``[MASK]`` or a random token, the Gumbel noise of the sampler (objective.py), the whole-word and span draws
(word_masking.py) and the yardstick's replacements (yardstick.py). An example is therefore masked and sampled the
same way whatever the batch it lands in, the micro-batch split, the number of processes or the step a run was
resumed at (docs/design.md, "Randomness keyed by example"). Each use has its own salt, and all of them are listed
here, so no two uses share one.

**The stream.** The data order is a pure function of (seed, stream position): the example at global stream
position ``i`` is ``permutation_e[i % N]``, ``e = i // N`` the epoch and ``permutation_e`` drawn from
``(seed, e)``. A run's whole data state is one integer, the position, which makes resume exact, and the ranks of
a distributed run take disjoint slices of the same global batch. The position is also the example's *key*.
The rows come from the shards through ``data/loader.py`` (``PretrainingData``, ``to_batch``).

**Masking.** Uniform selection (``select_positions``) takes round(mask_prob · n) of a row's n candidate tokens;
``generator_inputs`` turns most of them into ``[MASK]``; ``mask_batch`` joins both into a ``MaskedBatch`` of fixed
shapes, and ``masked_on_device`` applies the run's policy (``train.corruption``, the objective's [MASK] share) to
a stream batch. Whole-word and span selection (``train.masking``) are word_masking.py's.

``TrainingBatches`` joins the three for the loop: ``run.batches.next(step)`` is stream -> windows -> mask,
the mask being the run's ``Masking`` (which held-out evaluation uses too).

Shapes: B batch, T length, P selected slots per row (``max_selected``).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from electra.config import TrainConfig
from electra.data.loader import PretrainingData, to_batch
from electra.errors import UserError


# --------------------------------------------------------------------------- keyed randomness

_MASK32 = 0xFFFFFFFF
SALT_SELECT, SALT_MASK_TOKEN = 0x1B873593, 0x2C1B3C6D                          # masking, below
SALT_RANDOM_TOKEN = 0x3A8F05C5                                                 # masking (BERT's random token)
SALT_GUMBEL = 0x297A2D39                                                       # objective.py (the sampler)
SALT_WORD, SALT_SPAN_LENGTH, SALT_SPAN_SLOT = 0x5BD1E995, 0x68E31DA4, 0x1B56C4E9  # word_masking.py (words, spans)
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


# --------------------------------------------------------------------------- the stream

class BatchStream:
    """Endless shuffled training batches from ``position`` on, prepared by a background thread.

    Each call to ``next`` returns this rank's share of one global batch of ``batch_size``
    examples: rank r of w takes stream positions [p + r*B/w, p + (r+1)*B/w).
    """

    def __init__(self, data: PretrainingData, batch_size: int, position: int, seed: int,
                 rank: int = 0, world_size: int = 1, prefetch: int = 4, pin_memory: bool = False):
        if batch_size % world_size:
            raise UserError(f"batch size {batch_size} is not divisible by the {world_size} processes")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world_size, self.pin_memory = rank, world_size, pin_memory
        self.n = data.num_examples("train")
        self._perm_cache: dict[int, np.ndarray] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(position,), daemon=True)
        self._thread.start()

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            self._perm_cache = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perm_cache[epoch]

    def positions_to_indices(self, positions: np.ndarray) -> np.ndarray:
        out = np.empty_like(positions)
        epochs = positions // self.n
        for e in np.unique(epochs):
            rows = epochs == e
            out[rows] = self._permutation(int(e))[positions[rows] % self.n]
        return out

    def _produce(self, position: int) -> None:
        share = self.batch_size // self.world_size
        try:
            while not self._stop.is_set():
                start = position + self.rank * share
                keys = np.arange(start, start + share, dtype=np.int64)
                indices = self.positions_to_indices(keys)
                ids, types = self.data.examples("train", indices)
                batch = to_batch(ids, types, keys, self.data.special_ids["pad"],
                                 self.data.word_starts("train", indices))
                if self.pin_memory:
                    batch = {k: v.pin_memory() for k, v in batch.items()}
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                position += self.batch_size
        except BaseException as e:  # surface data errors in the training thread
            self._queue.put(e)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------- windows (sequence-length warm-up)

# Window keys live far above any example key (stream positions), so a window never shares its
# masking pattern with a whole example.
WINDOW_KEY_OFFSET = 1 << 48


def cut_into_windows(batch: dict[str, torch.Tensor], length: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Sequence-length warm-up: cut each (B, T) row into consecutive windows of ``length`` tokens.

    Returns (B', length) rows, B' <= B * ceil(T / length): every real token once, in order; windows of
    padding only are dropped (nothing in them to train on, and no compute spent on them). Each window gets
    its own masking key, derived from its example's key, so the corruption stays a function of the data
    position (exact resume) and differs between windows.

    Why: at initialisation attention is uniform, so the one neighbour that predicts a masked token is 1/T
    of what a position sees; at T = 64-128 a small model sits at the unigram plateau for thousands of steps,
    at T = 8 it leaves within hundreds; growing the windows in stages (``train.short_seq_schedule=doubling``)
    keeps what it learned when whole examples return (docs/finetune.md).
    """
    B, T = batch["input_ids"].shape
    n = -(-T // length)  # windows per row
    extra = n * length - T
    fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0, "word_starts": False}
    # pad the columns up to a multiple of length, then (B * n, length)
    rows = {k: torch.nn.functional.pad(batch[k], (0, extra), value=v).reshape(B * n, length)
            for k, v in fill.items() if k in batch}
    window_keys = WINDOW_KEY_OFFSET + batch["keys"][:, None] * n + torch.arange(n)  # (B, n)
    # Each window keeps the positions its tokens had, so every position embedding trains during the
    # warm-up (starting every window at 0 would train only the first ``length``). This alone did not stop
    # the fall back to the plateau at a switch from 8 to 128 tokens; the doubling schedule did
    # (docs/finetune.md). The padding columns added above sit past T and reuse position T - 1.
    position_ids = torch.arange(n * length).clamp(max=T - 1).reshape(n, length).repeat(B, 1)  # (B * n, length)
    keep = rows["attention_mask"].any(1)  # (B * n,)
    return {**{k: v[keep] for k, v in rows.items()}, "keys": window_keys.reshape(-1)[keep],
            "position_ids": position_ids[keep]}


# --------------------------------------------------------------------------- masking

# BERT's corruption of the selected tokens (train.objective=mlm): 80% [MASK], 10% a random token, 10% kept.
BERT_MASK_TOKEN_PROB, BERT_RANDOM_TOKEN_PROB = 0.8, 0.1


def max_selected(seq_len: int, mask_prob: float) -> int:
    """P, the most positions any row of length ``seq_len`` can have selected: the static width of the
    generator's LM-head input (Google's ``max_predictions_per_seq``)."""
    return min(seq_len, max(1, round(seq_len * mask_prob)))


def select_positions(candidates: torch.Tensor, mask_prob: float, keys: torch.Tensor,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose round(mask_prob * n) of each row's n candidate positions (at least one), uniformly.

    candidates: (B, T) bool, True for real, non-special tokens. keys: (B,) int64 example keys.
    Returns positions (B, P) int64 and valid (B, P) bool, P = max_selected(T): row b's selected
    positions are positions[b][valid[b]]; the other slots point at distinct unselected positions.
    Fixed shapes keep the step free of host synchronisation (no boolean indexing), and an exact count
    per row (as Google's code) rather than a coin per token gives every short sequence a prediction.
    """
    B, T = candidates.shape
    P = max_selected(T, mask_prob)
    n = candidates.sum(1)  # (B,)
    k = torch.minimum(torch.clamp((n.to(torch.float32) * mask_prob).round().long(), min=1), n)
    pos = torch.arange(T, device=candidates.device)
    u = keyed_uniform(seed, SALT_SELECT, fold64(keys)[:, None], pos[None, :])  # (B, T)
    u = torch.where(candidates, u, torch.full_like(u, 2.0))  # non-candidates sort last
    positions = u.argsort(dim=1)[:, :P]  # (B, P) candidates in the order of their draws
    valid = torch.arange(P, device=candidates.device)[None, :] < k[:, None]
    return positions, valid


def selected_mask(positions: torch.Tensor, valid: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B, P) positions + validity -> (B, T) bool."""
    out = torch.zeros(positions.shape[0], seq_len, dtype=torch.bool, device=positions.device)
    return out.scatter(1, positions, valid)


def generator_inputs(input_ids: torch.Tensor, selected: torch.Tensor, mask_id: int, mask_token_prob: float,
                     keys: torch.Tensor, seed: int, random_token_prob: float = 0.0,
                     vocab_size: int = 0, noise_cdf: torch.Tensor | None = None) -> torch.Tensor:
    """ELECTRA's corruption for the generator: of the selected tokens, ``mask_token_prob`` (0.85) become
    [MASK] and the rest keep their token (no random replacement, unlike BERT).

    With ``random_token_prob`` > 0 (BERT: 0.8 / 0.1), a further slice of the selected tokens becomes a
    token drawn uniformly from the ``vocab_size`` ids (it may equal the original, as in BERT), or from the
    distribution whose cumulative sums are ``noise_cdf`` (V,) (the hybrid objective: the unigram distribution).
    """
    T = input_ids.shape[1]
    pos = torch.arange(T, device=input_ids.device)
    u = keyed_uniform(seed, SALT_MASK_TOKEN, fold64(keys)[:, None], pos[None, :])  # (B, T)
    to_mask = selected & (u < mask_token_prob)
    out = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    if random_token_prob > 0:
        to_random = selected & (u >= mask_token_prob) & (u < mask_token_prob + random_token_prob)
        r = keyed_uniform(seed, SALT_RANDOM_TOKEN, fold64(keys)[:, None], pos[None, :])  # (B, T)
        if noise_cdf is None:
            random_ids = (r * vocab_size).long().clamp_(max=vocab_size - 1)
        else:  # inverse-CDF draws; ids of probability 0 (the special tokens) are never drawn
            random_ids = torch.searchsorted(noise_cdf, (r.double() * noise_cdf[-1]).contiguous())
            random_ids = random_ids.clamp_(max=len(noise_cdf) - 1)
        out = torch.where(to_random, random_ids, out)
    return out


@dataclass
class MaskedBatch:
    """One batch after masking. (B, T): input_ids, attention_mask, token_type_ids, generator_input_ids;
    (B, P): positions, valid; (B,): keys. ``has_padding`` is decided on the host, where it is free.
    ``position_ids`` (B, T) only for the windows of a sequence-length warm-up (None: 0..T-1)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    positions: torch.Tensor
    valid: torch.Tensor
    generator_input_ids: torch.Tensor
    keys: torch.Tensor
    has_padding: bool = True
    position_ids: torch.Tensor | None = None
    candidates: torch.Tensor | None = None  # (B, T) bool, the real non-special tokens (None: attention_mask)
    shown_mask: torch.Tensor | None = None  # (B, T) bool, where generator_input_ids is [MASK]

    _TENSORS = ("input_ids", "attention_mask", "token_type_ids", "positions", "valid", "generator_input_ids", "keys",
                "position_ids", "candidates", "shown_mask")

    @property
    def selected(self) -> torch.Tensor:
        """(B, T) bool: the selected positions."""
        return selected_mask(self.positions, self.valid, self.input_ids.shape[1])

    @property
    def encoder_mask(self) -> torch.Tensor | None:
        """What the encoders get: None when nothing is padded, so SDPA may use its fastest kernel."""
        return self.attention_mask if self.has_padding else None

    def split(self, n: int) -> list["MaskedBatch"]:
        """n micro-batches of equal size when n divides B (sizes differ by at most one otherwise: the
        windows of a sequence-length warm-up); losses are normalised by global counts, so either is exact."""
        parts = {name: [None] * n if getattr(self, name) is None else torch.tensor_split(getattr(self, name), n)
                 for name in self._TENSORS}
        return [MaskedBatch(**{name: parts[name][i] for name in self._TENSORS}, has_padding=self.has_padding)
                for i in range(n)]


def candidate_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: dict[str, int]) -> torch.Tensor:
    """(B, T) bool: the real, non-special tokens (not [PAD], [CLS], [SEP], [MASK]), the ones that can be selected."""
    candidates = attention_mask.bool()
    for name in ("pad", "cls", "sep", "mask"):
        candidates = candidates & (input_ids != special_ids[name])
    return candidates


# select(candidates (B, T) bool, input_ids (B, T), keys (B,), seed) -> (positions (B, P), valid (B, P)):
# whole-word and span selection (masking.make_selector); None is uniform ``select_positions``.
# (candidates, input_ids, keys, seed, word_starts) -> (positions, valid); word_starts (B, T) bool or None
Selector = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, "torch.Tensor | None"],
                    tuple[torch.Tensor, torch.Tensor]]


def mask_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
               keys: torch.Tensor, special_ids: dict[str, int], mask_prob: float, mask_token_prob: float,
               seed: int, has_padding: bool = True, select: Selector | None = None,
               random_token_prob: float = 0.0, vocab_size: int = 0,
               position_ids: torch.Tensor | None = None, noise_cdf: torch.Tensor | None = None,
               word_starts: torch.Tensor | None = None) -> MaskedBatch:
    """Select positions and build the generator's input (dynamic masking: new for every example key).

    ``word_starts`` (B, T) bool: which tokens begin a word, where the data stores it (a word segmenter); the
    whole-word and span selectors use it instead of ``##`` pieces.

    ``generator_input_ids`` is the input of the network that predicts the selected tokens: the generator,
    or with the MLM objective the one masked LM (BERT's corruption: ``random_token_prob`` 0.1).
    """
    candidates = candidate_mask(input_ids, attention_mask, special_ids)
    if select is None:
        positions, valid = select_positions(candidates, mask_prob, keys, seed)
    else:
        positions, valid = select(candidates, input_ids, keys, seed, word_starts)
    selected = selected_mask(positions, valid, input_ids.shape[1])
    gen_in = generator_inputs(input_ids, selected, special_ids["mask"], mask_token_prob, keys, seed,
                              random_token_prob, vocab_size, noise_cdf)
    return MaskedBatch(input_ids, attention_mask, token_type_ids, positions, valid, gen_in, keys, has_padding,
                       position_ids, candidates, gen_in == special_ids["mask"])


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


@dataclass
class Masking:
    """The run's masking policy, ``masked_on_device`` with the run's settings: training (``TrainingBatches``) and
    held-out evaluation mask the same way, from this one object."""

    special_ids: dict[str, int]
    t: TrainConfig
    vocab_size: int
    device: torch.device
    select: Selector | None = None         # whole-word or span selection; None: uniform
    noise_cdf: torch.Tensor | None = None  # the hybrid objective's replacement distribution, cumulative (V,)

    def __call__(self, batch: dict[str, torch.Tensor]) -> MaskedBatch:
        return masked_on_device(batch, self.special_ids, self.t, self.device, self.select, self.vocab_size,
                                self.noise_cdf)


class TrainingBatches:
    """What the loop trains on, one step at a time: the stream's next global batch (this rank's share), cut into
    windows during a sequence-length warm-up, then masked on the device by the run's ``Masking``."""

    def __init__(self, stream: BatchStream, masking: Masking, max_seq_length: int):
        self.stream, self.masking, self.max_seq_length = stream, masking, max_seq_length

    def next(self, step: int) -> MaskedBatch:
        """The masked batch of optimiser step ``step``; steps come in order (the stream is sequential)."""
        batch = next(self.stream)
        length = self.masking.t.window_length(step, self.max_seq_length)
        if length is not None:  # sequence-length warm-up: the same tokens as short windows
            batch = cut_into_windows(batch, length, self.masking.special_ids["pad"])
        return self.masking(batch)

    def close(self) -> None:
        self.stream.close()
