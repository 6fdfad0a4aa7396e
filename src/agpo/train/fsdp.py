"""FSDP2 sharding of a transformers causal LM, and its full (unsharded) state on disk.

``shard`` applies ``torch.distributed.fsdp.fully_shard`` to every decoder layer and then to the
root (embeddings, final norm, LM head): each process holds 1/world of every parameter, its
gradient and its optimizer state, and gathers one layer at a time for the forward and backward.
With the bf16-mixed precision (``agpo.models.precision``) FSDP2's ``MixedPrecisionPolicy``
gathers the parameters in bfloat16 for compute and reduces gradients in float32; the shards,
the master weights the optimizer steps, stay float32.

``save_full`` gathers the full state dict (``get_model_state_dict`` / ``get_optimizer_state_dict``
with ``full_state_dict=True, cpu_offload=True``) and process 0 writes it as a
``from_pretrained`` folder plus the optimizer, pickle-free:

  config.json, model.safetensors   the weights (a tied LM head stored once, as transformers does)
  optimizer.safetensors            optimizer tensors, ``state.<parameter name>.<key>``
  optimizer.json                   param groups (parameters by name) and non-tensor state

Parameter names, not shard layouts, key everything, so ``load_full`` puts the folder back into
a model sharded over any number of processes (process 0 reads, ``broadcast_from_rank0``), or
into a plain unsharded model and optimizer in one process.

Runs under torchrun (``torch.distributed`` with gloo on CPU, NCCL on CUDA); refused without it,
for a LoRA model (its frozen base and trainable adapters would need their own wrapping plan) and
for a model whose decoder layers cannot be found.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from agpo.errors import UserError
from agpo.io import replace_text
from agpo.models.precision import Precision

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"


def require_torchrun(flag: str = "--train.fsdp") -> None:
    """UserError unless this process was started by torchrun (WORLD_SIZE and RANK set)."""
    missing = [v for v in ("WORLD_SIZE", "RANK") if v not in os.environ]
    if missing:
        raise UserError(f"{flag}: FSDP shards the model over processes started by torchrun, and "
                        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; "
                        "run: torchrun --nproc-per-node N $(which agpo) train ...")


def decoder_layers(model: torch.nn.Module, flag: str = "--train.fsdp") -> list[torch.nn.Module]:
    """The decoder layers of a transformers causal LM, each to become one FSDP unit: the modules
    of the classes transformers names in ``_no_split_modules`` (what it keeps whole when it
    splits a model), else the ModuleList of ``config.num_hidden_layers`` blocks."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if layers:
        return layers
    depth = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and depth and len(module) == depth:
            return list(module)
    raise UserError(f"{flag}: cannot find the decoder layers of {type(model).__name__} (no "
                    "_no_split_modules, no ModuleList of config.num_hidden_layers blocks) to shard")


def shard(model: torch.nn.Module, precision: Precision, *, sum_gradients: bool = False,
          flag: str = "--train.fsdp") -> torch.nn.Module:
    """``model`` sharded in place with FSDP2 over every process (joins the process group when
    needed); returns it. Gradients are averaged over processes, as DDP does, unless
    ``sum_gradients`` (each process's loss already is its share of the global loss)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    from agpo.train.dist import init_distributed

    require_torchrun(flag)
    if getattr(model, "peft_config", None) is not None or getattr(model, "_hf_peft_config_loaded", False):
        raise UserError(f"{flag} with LoRA: not supported (the adapters are a few MB; train them "
                        "with plain data parallelism, without FSDP)")
    layers = decoder_layers(model, flag)
    if not dist.is_initialized():
        init_distributed()
    if not dist.is_initialized():  # torchrun with one process: a group of one, still sharded
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if precision.mixed else MixedPrecisionPolicy())
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    if sum_gradients:
        for module in model.modules():
            if isinstance(module, FSDPModule):
                # A plain SUM: the pre-multiplied sum FSDP2 would use otherwise is not in gloo.
                module.set_gradient_divide_factor(1.0)
                module.set_force_sum_reduction_for_comms(True)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether ``shard`` wrapped ``model``."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gathered(model: torch.nn.Module) -> Iterator[None]:
    """Inside: every parameter of the sharded ``model`` whole on every process (in FSDP2's
    param dtype: bfloat16 with bf16-mixed), and no forward gathers or frees anything.

    For the no-grad forwards: sampling, scoring, evaluation. Their number differs between
    processes (decoding stops when a process's rows are done; only process 0 evaluates), which
    per-layer gathering, a collective in every forward, cannot allow; and the prompt cache and
    split-head scoring call submodules directly, past the root's gathering hook. Entering and
    leaving are collectives (every process, same order). The unsharded weights cost one full
    copy per process for the duration.
    """
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    if not units:
        yield
        return
    # The root decides on its first forward that it keeps its weights after forward; do that
    # now, so that the setting restored below is the one training runs with.
    model._get_fsdp_state()._lazy_init()  # type: ignore[operator]
    groups = [g for m in units for g in m._get_fsdp_state()._fsdp_param_groups]  # type: ignore[operator]
    saved = [g.post_forward_mesh_info for g in groups]
    try:
        for m in units:
            m.unshard()
        for g in groups:
            g.post_forward_mesh_info = None  # keep the weights after each forward
        yield
    finally:
        for g, info in zip(groups, saved, strict=True):
            g.post_forward_mesh_info = info
        for m in units:
            m.reshard()


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
               ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights, optimizer state) unsharded on the CPU, keyed by parameter name; complete on
    process 0, empty elsewhere. A collective when sharded: every process calls it."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    optim = get_optimizer_state_dict(model, optimizer, options=options) if optimizer is not None else {}
    return weights, optim


def save_full(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, folder: Path) -> None:
    """Gather the full state and write it into ``folder`` (module docstring); process 0 writes,
    every process must call. Each file is written under a temporary name and renamed."""
    weights, optim = full_state(model, optimizer)
    if _rank() != 0:
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    aliases = _aliases(model)
    stored = {k: v.contiguous() for k, v in weights.items() if k not in aliases}
    model.config.save_pretrained(folder)
    _save_tensors(stored, folder / MODEL_FILE)
    if optimizer is not None:
        tensors, rest = _flat_optimizer(optim)
        _save_tensors(tensors, folder / OPTIMIZER_FILE)
        replace_text(folder / OPTIMIZER_JSON, json.dumps(rest, indent=1) + "\n")


def load_full(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, folder: Path) -> None:
    """Put the state ``save_full`` wrote into ``model`` (and ``optimizer``), sharded over any
    number of processes or plain in one. When sharded, process 0 reads and broadcasts; every
    process must call."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions, set_model_state_dict, set_optimizer_state_dict,
    )

    folder = Path(folder)
    broadcast = dist.is_initialized() and dist.get_world_size() > 1
    weights: dict[str, torch.Tensor] = {}
    optim: dict[str, Any] = {}
    if not broadcast or _rank() == 0:
        weights = load_file(str(folder / MODEL_FILE))
        for alias, name in _aliases(model).items():
            weights[alias] = weights[name]
        if optimizer is not None:
            optim = _nested_optimizer(load_file(str(folder / OPTIMIZER_FILE)),
                                      json.loads((folder / OPTIMIZER_JSON).read_text()))
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=broadcast)
    set_model_state_dict(model, weights, options=options)
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, optim, options=options)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _aliases(model: torch.nn.Module) -> dict[str, str]:
    """Tied parameters: {alias name → the first name of the same parameter} (a tied LM head
    → the embeddings), so that each tensor is stored once and found under every name."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases[name] = first[id(param)]
        else:
            first[id(param)] = name
    return aliases


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def _flat_optimizer(optim: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A full optimizer state dict (keyed by parameter name) → safetensors tensors
    ``state.<name>.<key>`` and JSON for the rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for name, state in optim.get("state", {}).items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{name}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{name}.{key}"] = value
    return tensors, {"param_groups": optim.get("param_groups", []), "scalars": scalars}


def _nested_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {}
    for flat, value in tensors.items():
        name, key = flat.removeprefix("state.").rsplit(".", 1)  # names have dots, keys do not
        state.setdefault(name, {})[key] = value
    for flat, value in rest["scalars"].items():
        name, key = flat.rsplit(".", 1)
        state.setdefault(name, {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


__all__ = [
    "MODEL_FILE", "OPTIMIZER_FILE", "OPTIMIZER_JSON", "decoder_layers", "full_state", "gathered",
    "is_sharded", "load_full", "require_torchrun", "save_full", "shard",
]
