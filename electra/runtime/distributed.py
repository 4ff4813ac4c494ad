"""Running on several processes: set-up from torchrun's environment, and one function that parallelises.

Launched by ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), a run joins
a process group: NCCL on CUDA, gloo on CPU. Started plainly (``python -m electra``) there is no process
group at all and every helper here is a no-op: single-process runs pay nothing.

How a distributed step equals the single-process one (see pretraining/step.py; finetuning/finetune.py does the
same with its own batches, normalising by the global batch's count of loss terms):

- every rank reads the same global batch order and takes its contiguous slice of each global batch
  (pretraining/batches.py BatchStream), so the examples of a step and their keys (which seed masking and
  sampling) are those of the single-process run;
- each rank's loss is normalised by the *global* batch counts (all-reduced, ``all_reduce_sum``), so the
  per-rank gradients *sum* to the full-batch gradient. DDP and FSDP average gradients by default; we make
  them sum instead (a SUM comm hook for DDP, a divide factor of 1 for FSDP2), which is exact for any world
  size (scaling the loss by world_size would round for sizes that are not powers of two);
- initial weights come from the same seed on every rank (and DDP broadcasts rank 0's anyway).

``parallelize`` applies DDP (default) or FSDP2 (``train.parallel=fsdp``) from outside the model, as
torchtitan does; the model code knows nothing about it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from electra.config import PARALLELS
from electra.errors import UserError


@dataclass
class Dist:
    """Where this process stands: rank of world_size, its device; ``is_main`` writes logs and checkpoints."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # None: let train.device decide (single process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed() -> Dist:
    """Join torchrun's process group; a plain ``Dist()`` (no group, no cost) when not under torchrun.

    With CUDA visible the group gets both backends (``cpu:gloo,cuda:nccl``: NCCL for GPU tensors, gloo for
    CPU ones), so train.device may still choose either; ``device`` is GPU ``LOCAL_RANK`` then, else the CPU.
    A world of one (``torchrun --nproc-per-node 1``) creates no group either.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist()
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return Dist(rank, world, local, dev)


def resolve_device(name: str, field: str = "train.device") -> torch.device:
    """A device name in a single process: ``auto`` is the GPU when one is visible. ``field`` names the setting
    in the error (``train.device`` for pre-training, ``device`` for fine-tuning)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{field}={name} but no CUDA GPU is visible; use --set {field}=cpu")
    return torch.device(name)


def run_device(name: str, d: Dist, field: str = "train.device") -> torch.device:
    """The device this process computes on: ``resolve_device``'s, except that under torchrun a GPU is this
    process's own (``LOCAL_RANK``; one GPU per process, torchrun numbers them) whatever ``cuda:N`` said."""
    device = resolve_device(name, field)
    if d.enabled and device.type == "cuda":
        return torch.device("cuda", d.local_rank)
    return device


def close_distributed(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------- collectives (no-ops alone)

def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum ``t`` over ranks in place (and return it); nothing happens in a single process."""
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool, d: Dist, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (a stop request agreed by all; a host sync)."""
    if not d.enabled:
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def broadcast_object(obj, d: Dist):
    """Rank 0's ``obj`` on every rank (pickled; for small set-up values only)."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --------------------------------------------------------------------------- parallelism


def _sum_allreduce_hook(process_group, bucket):
    """DDP comm hook: all-reduce SUM without the default division by world size (losses are already
    normalised by the global batch counts)."""
    group = process_group if process_group is not None else dist.group.WORLD
    fut = dist.all_reduce(bucket.buffer(), group=group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def parallelize(model: nn.Module, parallel: str, d: Dist) -> nn.Module:
    """Wrap ``model`` for ``d``'s world from outside; returns the module to call for training steps.

    Single process: ``model`` itself. ``ddp``: a DistributedDataParallel wrapper (``model`` stays the
    plain module underneath). ``fsdp``: FSDP2 shards ``model`` in place (each encoder layer, then the
    rest) and returns it. Gradients are summed over ranks, not averaged (see the module docstring).
    """
    if not d.enabled:
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp = DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
        ddp.register_comm_hook(None, _sum_allreduce_hook)
        return ddp
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in _encoder_layers(model):
            fully_shard(layer)
        fully_shard(model)
        for m in model.modules():
            if hasattr(m, "set_gradient_divide_factor"):
                m.set_gradient_divide_factor(1.0)  # sum, not mean
                m.set_force_sum_reduction_for_comms(True)  # plain SUM (gloo has no pre-multiplied sum)
        return model
    raise UserError(f"train.parallel {parallel!r} is not one of {', '.join(PARALLELS)}")


def _encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer layers of every encoder (each its own FSDP unit: gathered one at a time)."""
    layers, seen = [], set()
    for name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and name.endswith("encoder.layer"):
            for layer in m:
                if id(layer) not in seen:
                    seen.add(id(layer))
                    layers.append(layer)
    return layers


def no_gradient_sync(step_fn: nn.Module, last: bool):
    """Context for one accumulation micro-step: gradients are reduced over ranks on the ``last`` one only."""
    if hasattr(step_fn, "no_sync"):  # DDP
        return contextlib.nullcontext() if last else step_fn.no_sync()
    if hasattr(step_fn, "set_requires_gradient_sync"):  # FSDP2
        step_fn.set_requires_gradient_sync(last)
    return contextlib.nullcontext()


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


# --------------------------------------------------------------------------- FSDP2 checkpoints

# Checkpoints are always the full, unsharded state in the single-process layout (model.safetensors and an
# optimizer.pt keyed by parameter index), so a run saved by N ranks resumes on 1 and vice versa.

def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each optimiser parameter, in the optimiser's (index) order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer, plain: nn.Module | None, d: Dist):
    """A sharded (FSDP2) model's full weights and optimiser state, gathered on rank 0 (a collective: every rank
    calls it). Rank 0 gets (``plain`` holding the weights, an index-keyed optimiser state dict); the others
    (None, None)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=opts)
    optim = get_optimizer_state_dict(model, optimizer, options=opts)
    if not d.is_main:
        return None, None
    plain.load_state_dict(weights)
    index = {name: i for i, name in enumerate(_param_names(model, optimizer))}
    optim = {"state": {index[k]: v for k, v in optim["state"].items()},
             "param_groups": [{**g, "params": [index[k] for k in g["params"]]} for g in optim["param_groups"]]}
    return plain, optim


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load an index-keyed (single-process layout) optimiser state into a sharded model's optimiser."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = _param_names(model, optimizer)
    by_name = {"state": {names[i]: v for i, v in state["state"].items()},
               "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))
