"""One process of tests/train/test_fsdp.py, started by torchrun (2 processes, gloo on CPU).

    torchrun --nproc-per-node 2 --standalone tests/train/fsdp_worker.py OUT

Trains a tiny Llama sharded with FSDP2 (each process half of every batch) beside a plain copy
in this process (whole batches), saves the full state after STEPS_BEFORE steps, takes one more
step, and resumes a freshly built sharded model from the saved folder for that same step.
Process 0 writes into OUT what the test compares: the first batch's gradients
(``grads_*.safetensors``: plain, sharded with averaged and with summed gradients),
``plain.safetensors`` and ``sharded.safetensors`` (weights after STEPS_BEFORE steps), ``ckpt/``
(the saved state), ``uninterrupted.safetensors`` and ``resumed.safetensors`` (weights after the
next step), ``info.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from agpo.models.precision import Precision
from agpo.models.tiny import tiny_llama
from agpo.train.fsdp import full_state, load_full, save_full, shard

VOCAB, BATCH, LENGTH, STEPS_BEFORE, LR = 40, 4, 12, 2, 1e-2


def batches(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(3, VOCAB, (BATCH, LENGTH), generator=g) for _ in range(n)]


def model(seed: int = 0) -> torch.nn.Module:
    return tiny_llama(VOCAB, hidden=32, layers=2, heads=4, kv_heads=2, seed=seed)


def adamw(m: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(m.parameters(), lr=LR, weight_decay=0.01)


def step(m: torch.nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor, scale: float = 1.0) -> None:
    """One AdamW step on the mean next-token loss of ids (times ``scale``)."""
    loss = m(input_ids=ids, labels=ids).loss * scale
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def gradients(m: torch.nn.Module, ids: torch.Tensor, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Full gradients of the mean next-token loss of ids (times ``scale``), then cleared; a
    collective for a sharded model (AdamW hides a gradient's scale, so it is checked here)."""
    (m(input_ids=ids, labels=ids).loss * scale).backward()
    out = {n: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).clone()
           for n, p in m.named_parameters()}
    m.zero_grad(set_to_none=True)
    return out


def main(out: Path) -> None:
    torch.set_num_threads(1)
    fp32 = Precision("fp32")
    sharded = shard(model(), fp32)
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = slice(rank * BATCH // world, (rank + 1) * BATCH // world)  # this process's rows
    plain, summed = model(), shard(model(), fp32, sum_gradients=True)
    opts = {"sharded": adamw(sharded), "plain": adamw(plain)}
    data = batches(STEPS_BEFORE + 1)
    grads = {"plain": gradients(plain, data[0]), "sharded": gradients(sharded, data[0][mine]),
             # Summed gradients: each process's loss is its share of the whole batch's mean.
             "summed": gradients(summed, data[0][mine], scale=1 / world)}
    for ids in data[:STEPS_BEFORE]:
        step(sharded, opts["sharded"], ids[mine])
        step(plain, opts["plain"], ids)
    weights, _ = full_state(sharded)
    save_full(sharded, opts["sharded"], out / "ckpt")
    step(sharded, opts["sharded"], data[STEPS_BEFORE][mine])
    uninterrupted, _ = full_state(sharded)

    fresh = shard(model(seed=7), fp32)  # other weights: everything must come from the folder
    fresh_opt = adamw(fresh)
    load_full(fresh, fresh_opt, out / "ckpt")
    step(fresh, fresh_opt, data[STEPS_BEFORE][mine])
    resumed, _ = full_state(fresh)

    # bf16-mixed: float32 shards (the optimizer's master weights), bfloat16 compute.
    mixed = shard(model(), Precision("bf16-mixed"))
    seen: list[torch.dtype] = []
    layer = mixed.model.layers[0].self_attn.q_proj
    layer.register_forward_hook(lambda mod, args, output: seen.append(output.dtype))
    mixed_opt = adamw(mixed)
    before = [p.to_local().clone() for p in mixed.parameters()]
    step(mixed, mixed_opt, data[0][mine])
    moved = sum(int((p.to_local() != b).sum()) for p, b in zip(mixed.parameters(), before, strict=True))

    if rank == 0:
        for name, g in grads.items():
            save_file(g, str(out / f"grads_{name}.safetensors"))
        save_file(weights, str(out / "sharded.safetensors"))
        save_file({k: v.contiguous() for k, v in plain.state_dict().items() if k != "lm_head.weight"},
                  str(out / "plain.safetensors"))
        save_file(uninterrupted, str(out / "uninterrupted.safetensors"))
        save_file(resumed, str(out / "resumed.safetensors"))
        info = {
            "world": world,
            "local_rows": mine.stop - mine.start,
            "mixed_param_dtypes": sorted({str(p.dtype) for p in mixed.parameters()}),
            "mixed_compute_dtype": str(seen[0]),
            "mixed_moved": moved,
            "shard_numel": sum(p.to_local().numel() for p in sharded.parameters()),
            "full_numel": sum(p.numel() for p in plain.parameters()),
        }
        (out / "info.json").write_text(json.dumps(info))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
