"""Atomic, pickle-free checkpoints: checkpoints/step_N/ is a from_pretrained folder plus state.

Layout of one checkpoint (only safetensors and JSON, so resuming a folder someone sent you
unpickles nothing):
  config.json, model.safetensors, tokenizer files      the model (``agpo eval --model`` loads it;
                                                       a LoRA run stores its adapters instead)
  optimizer.safetensors + optimizer.json               optimizer tensors / param groups
  rng.safetensors                                      torch CPU RNG and the sampling generator
  trainer_state.json                                   step, tokens, scheduler, controllers,
                                                       data cursor, python RNG
It is written to ``.step_N.tmp`` and renamed, so a killed run never leaves a half checkpoint
under a valid name.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_STEP_DIR = re.compile(r"^step_(\d+)$")


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    tokenizer,  # noqa: ANN001 — any HF tokenizer
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    state: dict[str, Any],
) -> Path:
    """Write checkpoints/step_{step}/ atomically; ``state`` must be JSON-able."""
    root = Path(run_dir) / "checkpoints"
    final, tmp = root / f"step_{step}", root / f".step_{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _unwrap(model).save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tensors, groups = _optimizer_to_flat(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(groups))
    save_file({"torch_cpu": torch.get_rng_state(), "sampling": generator.get_state()},
              str(tmp / "rng.safetensors"))
    state = {**state, "step": step, "python_rng": _py_rng_to_json(random.getstate())}
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step (temporary folders are ignored)."""
    root = Path(run_dir) / "checkpoints"
    steps = [
        (int(m.group(1)), p)
        for p in (root.iterdir() if root.is_dir() else [])
        if (m := _STEP_DIR.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    return max(steps)[1] if steps else None


def load_checkpoint(
    ckpt: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Restore model weights, optimizer, RNG states in place; return trainer_state.json."""
    _load_weights(_unwrap(model), ckpt)
    groups = json.loads((ckpt / "optimizer.json").read_text())
    optimizer.load_state_dict(_optimizer_from_flat(load_file(str(ckpt / "optimizer.safetensors")), groups))
    rng = load_file(str(ckpt / "rng.safetensors"))
    torch.set_rng_state(rng["torch_cpu"])
    generator.set_state(rng["sampling"])
    state = json.loads((ckpt / "trainer_state.json").read_text())
    random.setstate(_py_rng_from_json(state["python_rng"]))
    return state


def _load_weights(model: torch.nn.Module, ckpt: Path) -> None:
    """Full weights (model.safetensors), or a LoRA run's adapters (adapter_model.safetensors)."""
    adapter = ckpt / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(adapter)))
        return
    from safetensors.torch import load_model

    # strict=False: tied weights (lm_head = embed_tokens) are stored once.
    missing, unexpected = load_model(model, str(ckpt / "model.safetensors"), strict=False)
    if unexpected:
        raise ValueError(f"{ckpt}: weights do not match the model (unexpected: {unexpected[:3]})")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as flat tensors ``state.{param}.{key}`` plus JSON param groups."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], groups: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for name, value in groups["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": groups["param_groups"]}


def _py_rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_rng_from_json(data: list) -> tuple:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)
