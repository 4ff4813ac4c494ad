"""Time our ELECTRA pre-training step against the same step assembled from transformers' classes.

    python benchmarks/bench_pretrain.py --device cpu --configs small:32x128 --append benchmarks/RESULTS.md
    PYTHONPATH=. python benchmarks/bench_pretrain.py --device cuda --append benchmarks/RESULTS.md
    python benchmarks/bench_pretrain.py --configs tiny:8x64 --repeats 2     # a quick check

One invocation measures, per configuration ``preset:BATCHxLENGTH``:

* ``ours``: random tokens -> ``mask_batch`` -> the product's ``train_step(run, mb)`` (electra/pretraining/step.py:
  ``ElectraPretrainer`` under autocast (bf16 on CUDA, fp32 on CPU) -> backward -> clip_grad_norm -> the
  non-finite check -> AdamW from ``build_optimizer`` -> zero_grad), the very function the training loop
  runs; ``ours+compile`` the same with the model under ``torch.compile`` (on CUDA by default,
  ``--compile`` / ``--no-compile``).
* ``transformers``: ``ElectraForMaskedLM`` + ``ElectraForPreTraining`` (SDPA attention) sharing one
  embeddings module, V-way logits at every position (labels -100 where unselected), the same masking,
  Gumbel-max sampling in float32 at the selected positions, BCE over real tokens, MLM + 50 * disc,
  ``torch.optim.AdamW`` with the same settings and kernel (fused on CPU and CUDA, as our runs and
  transformers' Trainer default ``adamw_torch_fused`` use).
* optionally a classification fine-tuning step and batched inference, ours vs ElectraForSequenceClassification.
* the corpus build (``electra data build``: read, tokenise, pack, write shards) in MB of text per second, on
  ``../shared/data/corpus`` with the BERT uncased vocabulary when they exist (``--data-corpus``, ``--data-vocab``).

Implementations alternate (A B B A ...) after warm-up; the reported time is the median over repetitions.
A correctness check first compares the first-step losses of both implementations on the same weights
(fp32, dropout off) and fails if they differ by 1e-3 or more. The matmul ceiling used for MFU is measured
in the same invocation. Needs only torch, numpy, transformers and this package (no network).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without PYTHONPATH

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from torch import nn  # noqa: E402

from electra.config import PRESETS, ModelConfig, PretrainConfig, preset_config  # noqa: E402
from electra.model import ElectraForSequenceClassification  # noqa: E402
from electra.pretraining.batches import mask_batch, max_selected  # noqa: E402
from electra.pretraining.flops import encoder_forward_flops, hf_pretrain_flops_per_step, pretrain_flops_per_step  # noqa: E402
from electra.pretraining.objective import ElectraPretrainer, gumbel_sample  # noqa: E402
from electra.pretraining.setup import Run, build_optimizer, parameter_groups  # noqa: E402
from electra.pretraining.stats import STAT_NAMES  # noqa: E402
from electra.pretraining.step import learning_rate, train_step  # noqa: E402
from electra.runtime.device import autocast_for, fused_adamw  # noqa: E402

VOCAB = 30522
SPECIAL = {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}  # BERT's uncased vocabulary
FIRST_WORD = 1000  # random "words" are drawn from [FIRST_WORD, VOCAB)


# --------------------------------------------------------------------------- inputs and timing

@dataclasses.dataclass
class Batch:
    input_ids: torch.Tensor       # (B, T): [CLS] A [SEP] B [SEP], every row real-length (no padding)
    attention_mask: torch.Tensor  # (B, T) ones
    token_type_ids: torch.Tensor  # (B, T) 0 for A, 1 for B
    keys: torch.Tensor            # (B,) example keys; step s masks with keys + s * B


def random_batch(B: int, T: int, device: torch.device, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_WORD, VOCAB, (B, T), generator=g)
    half = T // 2
    ids[:, 0], ids[:, half - 1], ids[:, -1] = SPECIAL["cls"], SPECIAL["sep"], SPECIAL["sep"]
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, half:] = 1
    return Batch(ids.to(device), torch.ones(B, T, dtype=torch.long, device=device), types.to(device),
                 torch.arange(B, dtype=torch.long, device=device))


def masked(batch: Batch, cfg: PretrainConfig, step: int):
    t, B = cfg.train, batch.input_ids.shape[0]
    return mask_batch(batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.keys + step * B, SPECIAL,
                      t.mask_prob, t.mask_token_prob, t.seed, has_padding=False)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn, calls: int, device: torch.device) -> float:
    """Wall time of ``calls`` calls divided by ``calls``; CUDA events on GPU."""
    sync(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def matmul_rate(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, budget_s: float = 1.0) -> float:
    """Median FLOP/s of an (m, k) x (k, n) matmul (2·m·n·k FLOPs)."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    fn = lambda: torch.mm(a, b)  # noqa: E731
    once = seconds_per_call(fn, 2, device)  # warm-up and a size estimate
    calls = max(1, min(50, int(0.05 / max(once, 1e-9))))  # ~50 ms per sample
    samples = [seconds_per_call(fn, calls, device)
               for _ in range(max(3, min(15, int(budget_s / max(once * calls, 1e-9)))))]
    return 2 * m * n * k / statistics.median(samples)


def state_bytes(module: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Bytes of the weights and optimiser state (what stays allocated between steps)."""
    params = {id(p): p for p in module.parameters()}.values()
    total = sum(p.numel() * p.element_size() for p in params)
    if optimizer is not None:
        for st in optimizer.state.values():
            total += sum(v.numel() * v.element_size() for v in st.values() if torch.is_tensor(v))
    return total


# --------------------------------------------------------------------------- the pre-training steps

class OursStep:
    """Our step: the product's own ``train_step(run, mb)`` (electra/pretraining/step.py, as the training loop runs
    it: the step's learning rate, phase and dropout seed, one process, one micro-batch) on a ``Run`` of the
    product's optimiser (``build_optimizer``)."""

    def __init__(self, cfg: PretrainConfig, device: torch.device, autocast, model: ElectraPretrainer,
                 compile: bool = False):
        self.cfg, self.device, self.autocast = cfg, device, autocast
        self.model = model.to(device)
        fn = torch.compile(self.model) if compile else self.model  # as build_training does for train.compile
        self.run = Run(cfg=cfg, model=self.model, step_fn=fn, optimizer=build_optimizer(self.model, cfg.train, device),
                       device=device, autocast=autocast)
        self.optimizer = self.run.optimizer

    def __call__(self, batch: Batch) -> torch.Tensor:
        t, step = self.cfg.train, self.run.step
        stats = train_step(self.run, masked(batch, self.cfg, step)).stats
        self.run.state["step"] = step + 1
        s = dict(zip(STAT_NAMES, stats))  # the step's loss, MLM + λ·disc, from its sums (no host sync)
        return s["mlm_loss_sum"] / s["num_selected"] + t.disc_weight * s["disc_loss_sum"] / s["disc_terms"]

    @torch.no_grad()
    def losses(self, batch: Batch) -> tuple[float, float, float]:
        """(mlm, disc, total) of step 0, fp32, dropout off."""
        self.model.eval()
        mb = masked(batch, self.cfg, 0)
        loss, stats = self.model(mb, self.cfg.train.seed, self.cfg.train.disc_weight, mb.valid.sum(),
                                 mb.attention_mask.sum())
        self.model.train()
        return (stats[0] / stats[2]).item(), (stats[3] / stats[5]).item(), loss.item()

    def state_bytes(self) -> int:
        return state_bytes(self.model, self.optimizer)


def hf_config(m: ModelConfig, **extra) -> "transformers.ElectraConfig":
    d = {**dataclasses.asdict(m), **extra}
    try:
        return transformers.ElectraConfig(**d, attn_implementation="sdpa")
    except TypeError:  # older signatures
        c = transformers.ElectraConfig(**d)
        c._attn_implementation = "sdpa"
        return c


class HFStep:
    """The same step written the way a transformers user would, with transformers' ELECTRA classes."""

    def __init__(self, cfg: PretrainConfig, device: torch.device, autocast, init_from: ElectraPretrainer | None):
        self.cfg, self.device, self.autocast = cfg, device, autocast
        gen = transformers.ElectraForMaskedLM(hf_config(cfg.generator_model_config()))
        disc = transformers.ElectraForPreTraining(hf_config(cfg.model))
        if init_from is not None:  # identical parameter names: the state dicts load as they are
            gen.load_state_dict(init_from.generator.state_dict())
            disc.load_state_dict(init_from.discriminator.state_dict())
        # Share the embeddings (token, position, type, LayerNorm); re-tie the generator's output layer.
        gen.electra.embeddings = disc.electra.embeddings
        gen.generator_lm_head.weight = disc.electra.embeddings.word_embeddings.weight
        for m in (gen, disc):
            if getattr(m.config, "_attn_implementation", "sdpa") != "sdpa":
                print(f"warning: transformers uses attn_implementation={m.config._attn_implementation!r}")
        self.gen, self.disc = gen.to(device), disc.to(device)
        self.model = nn.ModuleDict({"discriminator": self.disc, "generator": self.gen})
        t = cfg.train
        decay, no_decay, seen = [], [], set()
        for name, p in self.model.named_parameters():  # named_parameters() lists the shared ones once
            if id(p) not in seen:
                seen.add(id(p))
                (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon,
            fused=fused_adamw(device))  # our kernel, also transformers' Trainer default (adamw_torch_fused)
        self.params = decay + no_decay
        self.step_idx = 0

    def _forward(self, batch: Batch, step: int):
        t = self.cfg.train
        mb = masked(batch, self.cfg, step)
        B, P = mb.positions.shape
        labels = torch.where(mb.selected, mb.input_ids, torch.full_like(mb.input_ids, -100))
        g = self.gen(input_ids=mb.generator_input_ids, attention_mask=mb.attention_mask,
                     token_type_ids=mb.token_type_ids, labels=labels)  # logits (B, T, V) at every position
        with torch.no_grad():
            V = g.logits.shape[-1]
            logits = g.logits.gather(1, mb.positions[..., None].expand(B, P, V))  # (B, P, V)
            sampled = gumbel_sample(logits, mb.keys[:, None].expand(B, P), mb.positions, t.seed)  # float32 inside
            targets = mb.input_ids.gather(1, mb.positions)
            sampled = torch.where(mb.valid, sampled, targets)
            disc_input = mb.input_ids.scatter(1, mb.positions, sampled)
            disc_labels = ((disc_input != mb.input_ids) & mb.attention_mask.bool()).float()
        d = self.disc(input_ids=disc_input, attention_mask=mb.attention_mask, token_type_ids=mb.token_type_ids,
                      labels=disc_labels)  # BCE over the tokens where attention_mask == 1
        return g.loss, d.loss, g.loss + t.disc_weight * d.loss

    def __call__(self, batch: Batch) -> torch.Tensor:
        t = self.cfg.train
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step_idx, t)
        with self.autocast():
            _, _, loss = self._forward(batch, self.step_idx)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, t.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_idx += 1
        return loss.detach()

    @torch.no_grad()
    def losses(self, batch: Batch) -> tuple[float, float, float]:
        self.model.eval()
        out = tuple(x.item() for x in self._forward(batch, 0))
        self.model.train()
        return out

    def state_bytes(self) -> int:
        return state_bytes(self.model, self.optimizer)


# --------------------------------------------------------------------------- fine-tuning and inference

class Classify:
    """A fine-tuning step (CE, clip, AdamW) or a batched inference call, for ours or transformers'."""

    def __init__(self, model: nn.Module, hf: bool, train: bool, device: torch.device, autocast):
        self.model, self.hf, self.train, self.autocast = model, hf, train, autocast
        self.optimizer = torch.optim.AdamW(parameter_groups(model, 0.0), lr=1e-4, eps=1e-6,
                                           fused=fused_adamw(device)) if train else None

    def __call__(self, batch: Batch) -> torch.Tensor:
        labels = batch.keys % 2
        if not self.train:
            self.model.eval()
            with torch.inference_mode(), self.autocast():
                return self._logits(batch)
        self.model.train()
        with self.autocast():
            loss = F.cross_entropy(self._logits(batch).float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _logits(self, batch: Batch) -> torch.Tensor:
        if self.hf:  # as a transformers user calls it, attention_mask included
            return self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                              token_type_ids=batch.token_type_ids).logits
        # Ours skips the mask when nothing is padded (decided on the host, as electra.pretrain does).
        return self.model(batch.input_ids, None, batch.token_type_ids)

    def state_bytes(self) -> int:
        return state_bytes(self.model, self.optimizer)


# --------------------------------------------------------------------------- measurement

def parse_configs(text: str) -> list[tuple[str, int, int]]:
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            name, shape = item.split(":")
            b, t = (int(x) for x in shape.lower().split("x"))
        except ValueError:
            sys.exit(f"--configs: {item!r} is not PRESET:BATCHxLENGTH, e.g. small:32x128")
        if name not in PRESETS:
            sys.exit(f"--configs: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        if not (0 < t <= 512 and b > 0):
            sys.exit(f"--configs: {item!r}: length must be in 1..512 and batch positive")
        out.append((name, b, t))
    return out


def alternate(impls: dict, batch: Batch, warmup: int, repeats: int, calls: int, device: torch.device) -> dict:
    """Seconds per call for each implementation: warm-up rounds, then ``repeats`` rounds in A B .. B A order."""
    times = {name: [] for name in impls}
    names = list(impls)
    for r in range(warmup + repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            s = seconds_per_call(lambda: impls[name](batch), calls, device)
            if r >= warmup:
                times[name].append(s)
    return times


def cuda_peak_bytes(impl, batch: Batch, device: torch.device) -> int:
    """Peak bytes of one call attributable to ``impl``: its weights/optimiser state + grads + activations
    (memory held by the other implementations is subtracted)."""
    sync(device)
    others = torch.cuda.memory_allocated(device) - impl.state_bytes()
    torch.cuda.reset_peak_memory_stats(device)
    impl(batch)
    sync(device)
    return torch.cuda.max_memory_allocated(device) - others


def probe_cpu_memory(config: str, impl: str) -> float | None:
    """Peak RSS growth of a fresh process that builds one implementation and runs two steps (bytes)."""
    cmd = [sys.executable, __file__, "--device", "cpu", "--configs", config, "--_probe-memory", impl]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        return float(json.loads(res.stdout.strip().splitlines()[-1])["peak_rss_growth"])
    except Exception as e:  # noqa: BLE001 - memory is a side figure; never fail the benchmark on it
        print(f"  (memory probe for {impl} failed: {e})")
        return None


def max_rss_bytes() -> int:
    """Peak RSS of this process. VmHWM first: after fork+exec, getrusage's ru_maxrss starts at the parent's
    peak (Linux carries it over), which would hide the child's own growth."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_memory_probe(args, device: torch.device) -> None:
    (name, B, T), = parse_configs(args.configs)
    cfg = preset_config(name, vocab_size=VOCAB)
    batch = random_batch(B, T, device)
    autocast = autocast_for(device, "auto")
    base = max_rss_bytes()
    torch.manual_seed(0)
    if args._probe_memory == "ours":
        impl = OursStep(cfg, device, autocast, ElectraPretrainer(cfg.model, cfg.generator_model_config()))
    else:
        impl = HFStep(cfg, device, autocast, None)
    for _ in range(2):
        impl(batch)
    print(json.dumps({"peak_rss_growth": max_rss_bytes() - base}))


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return {"cpu": cpu, "cores": f"{usable} usable of {os.cpu_count()}", "torch_threads": torch.get_num_threads(),
            "gpu": gpu}


def load_average() -> float | None:
    """1-minute load average (other work on the machine distorts timings, CPU ones most)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def fmt_bytes(b: float | None) -> str:
    return "n/a" if b is None else f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", default=None,
                    help="comma-separated PRESET:BATCHxLENGTH (default: small:32x128 on CPU; "
                         "small:128x128,base:32x128,base:8x512 on CUDA)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds per implementation (median reported)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 1 on CPU, 2 on CUDA)")
    ap.add_argument("--calls", type=int, default=None,
                    help="steps per timed round (default 1 on CPU, 10 on CUDA)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="also time torch.compile of our step (default: on for CUDA, off for CPU)")
    ap.add_argument("--finetune", action=argparse.BooleanOptionalAction, default=True,
                    help="also time a classification fine-tuning step and batched inference")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                    help="measure peak memory (on CPU: one fresh subprocess per implementation)")
    ap.add_argument("--append", default=None, help="append the markdown report to this file")
    shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    ap.add_argument("--data-corpus", default=str(shared / "corpus"),
                    help="corpus file or folder whose build (`electra data build`) is timed; '' to skip")
    ap.add_argument("--data-vocab", default=str(shared / "vocab" / "bert-base-uncased-vocab.txt"),
                    help="tokenizer for the data build (vocab.txt, tokenizer.json or a tokenizer folder)")
    ap.add_argument("--_probe-memory", dest="_probe_memory", choices=("ours", "transformers"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA GPU is visible")
    if args._probe_memory:
        return run_memory_probe(args, device)
    cuda = device.type == "cuda"
    configs = parse_configs(args.configs or ("small:128x128,base:32x128,base:8x512" if cuda else "small:32x128"))
    warmup = args.warmup if args.warmup is not None else (2 if cuda else 1)
    calls = args.calls or (10 if cuda else 1)
    use_compile = cuda if args.compile is None else args.compile
    autocast = autocast_for(device, "auto")
    precision = "bf16 autocast" if cuda else "fp32"
    info = machine_info(device)
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"{info['cpu']}, {info['cores']} cores, torch threads {info['torch_threads']}, GPU {info['gpu']}; "
          f"torch {torch.__version__}, transformers {transformers.__version__}; {precision}")
    load_start = load_average()
    if load_start is not None and load_start > 0.5:
        print(f"warning: load average {load_start:.2f} before starting: something else is running; "
              "timings from a busy machine are not comparable")

    # ---- the device's dense matmul ceiling: a large square matmul and the encoders' FFN shape
    dtype = torch.bfloat16 if cuda else torch.float32
    square = 8192 if cuda else 2048
    ceilings = {f"{square}³ square": matmul_rate(square, square, square, dtype, device)}
    for name, B, T in configs:
        m = preset_config(name).model
        ceilings.setdefault(f"{B * T}×{m.hidden_size}×{m.intermediate_size} ({name} FFN)",
                            matmul_rate(B * T, m.hidden_size, m.intermediate_size, dtype, device))
    peak = max(ceilings.values())
    for k, v in ceilings.items():
        print(f"matmul {k}: {v / 1e9:,.0f} GFLOP/s")

    rows, ft_rows, checks, notes = [], [], [], []
    for name, B, T in configs:
        label = f"{name}:{B}x{T}"
        print(f"\n== {label}")
        cfg = preset_config(name, vocab_size=VOCAB)
        batch = random_batch(B, T, device)
        torch.manual_seed(0)
        base_model = ElectraPretrainer(cfg.model, cfg.generator_model_config())
        compiled_copy = copy.deepcopy(base_model) if use_compile else None
        hf = HFStep(cfg, device, autocast, base_model)  # copies the weights before any step
        ours = OursStep(cfg, device, autocast, base_model)
        impls = {"ours": ours, "transformers": hf}

        # ---- correctness: same weights, same masking and noise, fp32, dropout off
        a, b = ours.losses(batch), hf.losses(batch)
        delta = max(abs(x - y) for x, y in zip(a, b))
        checks.append((label, a, b, delta))
        print(f"first-step losses (mlm, disc, total), fp32 eval: ours {a[0]:.5f} {a[1]:.5f} {a[2]:.5f}; "
              f"transformers {b[0]:.5f} {b[1]:.5f} {b[2]:.5f}; max |Δ loss| = {delta:.2e}")
        assert all(map(torch.isfinite, map(torch.tensor, a + b))), "non-finite loss"
        assert delta < 1e-3, f"{label}: ours and transformers disagree (max |Δ loss| {delta:.2e})"

        if compiled_copy is not None:
            try:
                impls["ours+compile"] = OursStep(cfg, device, autocast, compiled_copy, compile=True)
                impls["ours+compile"](batch)  # compile now, outside the timed rounds
            except Exception as e:  # noqa: BLE001 - report and go on without it
                impls.pop("ours+compile", None)
                notes.append(f"{label}: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
                print(notes[-1])

        times = alternate(impls, batch, warmup, repeats=args.repeats, calls=calls, device=device)
        last_losses = {k: float(impl(batch)) for k, impl in impls.items()}
        print("training-mode loss after the timed steps: "
              + ", ".join(f"{k} {v:.3f}" for k, v in last_losses.items()))
        assert all(map(lambda v: v == v and abs(v) != float("inf"), last_losses.values())), "non-finite loss"

        mem = {}
        if args.memory:
            for k, impl in impls.items():
                if cuda:
                    mem[k] = cuda_peak_bytes(impl, batch, device)
                elif k != "ours+compile":
                    mem[k] = probe_cpu_memory(label, k)

        # Our step runs the LM head on B * max_selected(T) slots (a static shape); count what it runs.
        lm_rows = B * max_selected(T, cfg.train.mask_prob)
        our_flops = pretrain_flops_per_step(cfg, B, T, num_selected=lm_rows)["train"]
        hf_flops = hf_pretrain_flops_per_step(cfg, B, T)["train"]
        own = {"ours": our_flops, "ours+compile": our_flops, "transformers": hf_flops}
        t_hf = statistics.median(times["transformers"])
        for k, ts in times.items():
            s = statistics.median(ts)
            rows.append(dict(config=label, impl=k, ms=s * 1e3, lo=min(ts) * 1e3, hi=max(ts) * 1e3, tok=B * T / s,
                             seq=B / s, mem=mem.get(k), speedup=t_hf / s, gflop=own[k] / 1e9,
                             mfu=own[k] / s / peak, useful=our_flops / s / peak))
            print(f"{k:>14}: {s * 1e3:9.1f} ms/step  {B * T / s:10,.0f} tok/s  x{t_hf / s:.2f} vs transformers  "
                  f"MFU {own[k] / s / peak:6.1%}  useful MFU {our_flops / s / peak:6.1%}  mem {fmt_bytes(mem.get(k))}")
        del impls, ours, hf, base_model, compiled_copy

        if args.finetune:
            torch.manual_seed(1)
            mine = ElectraForSequenceClassification(cfg.model, 2).to(device)
            theirs = transformers.ElectraForSequenceClassification(hf_config(cfg.model, num_labels=2))
            theirs.load_state_dict(mine.state_dict())  # same names: electra.*, classifier.dense/out_proj
            theirs.to(device)
            tasks = {("ours", "fine-tune step"): Classify(mine, False, True, device, autocast),
                     ("transformers", "fine-tune step"): Classify(theirs, True, True, device, autocast),
                     ("ours", "inference"): Classify(mine, False, False, device, autocast),
                     ("transformers", "inference"): Classify(theirs, True, False, device, autocast)}
            ft_times = alternate(tasks, batch, warmup, args.repeats, calls, device)
            H = cfg.model.hidden_size  # encoder + [CLS] head (dense H->H, out_proj H->2)
            fwd = encoder_forward_flops(cfg.model, B, T)["total"] + 2 * B * H * (H + 2)
            for (k, task), ts in ft_times.items():
                s = statistics.median(ts)
                ref = statistics.median(ft_times[("transformers", task)])
                flops = fwd * (3 if task.startswith("fine") else 1)
                m = cuda_peak_bytes(tasks[(k, task)], batch, device) if (cuda and args.memory) else None
                ft_rows.append(dict(config=label, impl=k, task=task, ms=s * 1e3, seq=B / s, tok=B * T / s,
                                    speedup=ref / s, mfu=flops / s / peak, mem=m))
                print(f"{k:>14} {task:>15}: {s * 1e3:9.1f} ms  {B / s:9,.1f} seq/s  x{ref / s:.2f}  "
                      f"MFU {flops / s / peak:6.1%}")
            del tasks, mine, theirs
        if cuda:
            torch.cuda.empty_cache()

    if not args.finetune:
        notes.append("fine-tuning and inference not measured (--no-finetune)")
    data_row = None
    if args.data_corpus and Path(args.data_corpus).exists() and Path(args.data_vocab).exists():
        data_row = data_build_rate(args.data_corpus, args.data_vocab, repeats=max(1, min(args.repeats, 3)))
        print(f"data build: {data_row['mb']:.2f} MB of text in {data_row['s']:.2f} s (median of "
              f"{data_row['repeats']}): {data_row['mb'] / data_row['s']:.2f} MB/s")
    elif args.data_corpus:
        notes.append(f"corpus build not measured: {args.data_corpus} or {args.data_vocab} does not exist")
    info["load"] = f"{load_start:.2f} at start, {load_average():.2f} at end" if load_start is not None else "n/a"
    report = render(args, info, started, precision, warmup, calls, ceilings, peak, rows, ft_rows, checks, notes,
                    data_row)
    print("\n" + report)
    if args.append:
        from electra.runtime.files import make_folder, open_for_appending

        path = Path(args.append)
        make_folder(path.parent)
        new = not path.exists() or path.stat().st_size == 0
        header = ("# Benchmark results\n\nAppended by `benchmarks/bench_pretrain.py --append`; "
                  "see benchmarks/README.md for what is measured. Newest last.\n\n") if new else ""
        with open_for_appending(path) as f:  # append only, in one write: earlier results are never touched
            f.write(header + report + "\n")
        print(f"appended to {path}")


def data_build_rate(corpus: str, vocab: str, repeats: int, length: int = 128) -> dict:
    """Time ``build_dataset`` end to end (into a temporary folder) and measure the corpus's text size."""
    import gzip
    import tempfile

    from electra.data.corpus import build_dataset
    from electra.data.sources import find_corpus_files

    files = find_corpus_files([corpus])
    size = 0
    for f in files:  # MB of text = uncompressed bytes, so that .gz and plain corpora compare
        with (gzip.open(f, "rb") if f.suffix == ".gz" else open(f, "rb")) as fh:
            while chunk := fh.read(1 << 22):
                size += len(chunk)
    times, tokens = [], 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            manifest = build_dataset([corpus], vocab, Path(tmp) / "data", max_seq_length=length, progress=False)
            times.append(time.perf_counter() - t0)
        tokens = sum(split["num_tokens"] for split in manifest["splits"].values())
    return dict(corpus=corpus, vocab=Path(vocab).name, mb=size / 1e6, s=statistics.median(times), tokens=tokens,
                repeats=repeats, length=length, threads=os.environ.get("RAYON_NUM_THREADS", os.cpu_count()))


def render(args, info, started, precision, warmup, calls, ceilings, peak, rows, ft_rows, checks, notes,
           data_row=None) -> str:
    env = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    out = [
        f"## ELECTRA pre-training step, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"- Command: `{env}python {shlex.join(sys.argv)}`",
        f"- Machine: {info['cpu']}, {info['cores']} cores (torch threads {info['torch_threads']}); GPU: {info['gpu']}; "
        f"1-min load average {info['load']}",
        f"- Software: torch {torch.__version__}, transformers {transformers.__version__}, "
        f"Python {platform.python_version()}",
        f"- Method: {precision}; {warmup} warm-up round(s), then {args.repeats} timed rounds alternating the "
        f"implementations (A B, B A, ...), {calls} step(s) per round; median (min–max) per step.",
        "- Ceiling (dense matmul, same invocation): "
        + "; ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in ceilings.items())
        + f". MFU = analytic FLOPs per step (electra/pretraining/flops.py) / time / {peak / 1e9:,.0f} GFLOP/s "
        "(the best of these). *MFU* uses each implementation's own FLOPs (transformers' generator "
        "computes V-way logits at every position); *useful MFU* uses our count for both.",
        "- Correctness (same weights, masking and Gumbel noise; fp32, dropout off): "
        + "; ".join(f"{c}: losses (mlm, disc) ours {a[0]:.4f}, {a[1]:.4f} vs transformers {b[0]:.4f}, {b[1]:.4f}, "
                    f"max |Δ loss| {d:.1e}" for c, a, b, d in checks),
        "",
        "| config | implementation | ms/step (min–max) | tokens/s | seq/s | peak memory | speed-up vs transformers "
        "| GFLOP/step (own) | MFU | useful MFU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(f"| {r['config']} | {r['impl']} | {r['ms']:,.1f} ({r['lo']:,.1f}–{r['hi']:,.1f}) | {r['tok']:,.0f} "
                   f"| {r['seq']:,.1f} | {fmt_bytes(r['mem'])} | ×{r['speedup']:.2f} | {r['gflop']:,.1f} "
                   f"| {r['mfu']:.1%} | {r['useful']:.1%} |")
    mem_note = ("peak memory: bytes allocated by the implementation during a step (weights, grads, AdamW "
                "state, activations)" if info["gpu"] != "none" else
                "peak memory: peak RSS growth of a fresh process building the implementation and running "
                "two steps (weights, grads, AdamW state, activations, allocator slack)")
    out += ["", f"Notes: {mem_note}."]
    if ft_rows:
        out += ["", "Classification (2 labels, [CLS] head) on the same batch: our encoder vs "
                "`ElectraForSequenceClassification`; inference is a forward under `torch.inference_mode`.", "",
                "| config | implementation | task | ms | seq/s | tokens/s | speed-up vs transformers | MFU | peak memory |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in ft_rows:
            out.append(f"| {r['config']} | {r['impl']} | {r['task']} | {r['ms']:,.1f} | {r['seq']:,.1f} "
                       f"| {r['tok']:,.0f} | ×{r['speedup']:.2f} | {r['mfu']:.1%} | {fmt_bytes(r['mem'])} |")
    if data_row:
        out += ["", f"Corpus build (`electra data build`: read, tokenise, pack into {data_row['length']}-token "
                f"examples, write shards) of {data_row['corpus']} ({data_row['mb']:.2f} MB of text, "
                f"{data_row['tokens']:,} tokens) with {data_row['vocab']}: median of {data_row['repeats']} runs "
                f"{data_row['s']:.2f} s, **{data_row['mb'] / data_row['s']:.2f} MB/s**, "
                f"{data_row['tokens'] / data_row['s']:,.0f} tokens/s (tokenizers' own thread pool: "
                f"{data_row['threads']} threads)."]
    out += [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
