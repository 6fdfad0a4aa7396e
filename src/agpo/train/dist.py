"""Data-parallel plumbing of the trainer: this process's place, and every collective it uses.

Each helper is the identity (or free) in a single process, so the rest of train/ calls them
unconditionally. Every collective here must be called by every process in the same order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place in a data-parallel run (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group when launched by torchrun / accelerate (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def world_size() -> int:
    """Processes in the initialised group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce(x: torch.Tensor, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> torch.Tensor:
    """``x`` reduced over processes (a new tensor on x's device; x itself is left alone).

    NCCL reduces CUDA tensors only, so under NCCL the values travel through this process's GPU.
    """
    if world_size() == 1:
        return x
    on_gpu = dist.get_backend() == "nccl"
    y = x.detach().to(torch.device("cuda", torch.cuda.current_device()) if on_gpu else x.device).clone()
    dist.all_reduce(y, op=op)
    return y.to(x.device)


def all_reduce_sum(values: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum of ``values`` over processes (a copy; the input is left alone)."""
    return all_reduce(values) if d.world > 1 else values


def any_process(flag: bool, d: Dist) -> bool:
    """True when ``flag`` is True on some process (one tiny all-reduce)."""
    if d.world == 1:
        return flag
    return bool(all_reduce_sum(torch.tensor([float(flag)]), d).item() > 0)


def gather(values: list[float], d: Dist) -> list[float]:
    """Every process's list, concatenated in rank order."""
    if d.world == 1:
        return values
    parts: list[list[float]] = [[] for _ in range(d.world)]
    dist.all_gather_object(parts, values)
    return [v for part in parts for v in part]


def barrier(d: Dist) -> None:
    """Wait for every process."""
    if d.world > 1:
        dist.barrier()


def all_reduce_grads(model: torch.nn.Module) -> None:
    """Sum gradients over processes: each process's loss is already its share of the global loss.

    A process whose share of the mini-batch was empty has no gradients: it sends zeros. One
    flat all-reduce (a copy of every gradient) instead of one call per parameter.
    """
    if world_size() == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = all_reduce(torch.cat([p.grad.flatten() for p in params]))
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
