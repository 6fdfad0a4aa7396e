"""Atomic, checked, pickle-free checkpoints: checkpoints/step_N/ is a from_pretrained folder
plus state.

Layout of one checkpoint (only safetensors and JSON, so resuming a folder someone sent you
unpickles nothing):
  config.json, model.safetensors, tokenizer files      the model (``agpo eval --model`` loads it;
                                                       a LoRA run stores its adapters instead)
  optimizer.safetensors + optimizer.json               optimizer tensors / param groups
  rng.safetensors                                      torch CPU RNG and the sampling generator
  rng_rank{r}.safetensors                              process r's sampling generator (r ≥ 1,
                                                       multi-process runs only)
  trainer_state.json                                   step, tokens, optimizer steps (the LR
                                                       schedule's position), controllers, data
                                                       cursor, python RNG, world size
  run_config.json                                      the resolved run config of this step
  checksums.json                                       SHA-256 of every other file
A sharded run (--train.fsdp) gathers its full state into the same files with
``agpo.train.fsdp.save_full`` (weights as above, the optimizer keyed by parameter name;
trainer_state.json says ``"fsdp": true``), so it resumes on any number of processes.
Every file is written into ``.step_N.tmp`` (other processes add theirs there too), the
checksums last, and the folder is then renamed: a killed run never leaves a half checkpoint
under a valid name, and a file damaged later (truncated copy, bad disk) fails its checksum, so
resume falls back to the newest checkpoint that is intact.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from agpo.errors import UserError

_STEP_DIR = re.compile(r"^step_(\d+)$")
CHECKSUMS = "checksums.json"
RUN_CONFIG = "run_config.json"


def checkpoint_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """Every ``checkpoints/step_N`` folder of a run, oldest first; the one checkpoint finder.

    Temporary (``.step_N.tmp``) folders are never listed; whether a listed folder is intact is
    ``damage``'s question.
    """
    root = Path(run_dir) / "checkpoints"
    found = [(int(m.group(1)), p) for p in (root.iterdir() if root.is_dir() else [])
             if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the highest step (None without one); not checked for damage."""
    found = checkpoint_dirs(run_dir)
    return found[-1][1] if found else None


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Where checkpoint ``step`` lives once committed."""
    return Path(run_dir) / "checkpoints" / f"step_{step}"


def tmp_dir(run_dir: Path, step: int) -> Path:
    """Where checkpoint ``step`` is assembled before ``commit`` renames it into place."""
    return Path(run_dir) / "checkpoints" / f".step_{step}.tmp"


def begin_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    tokenizer,  # noqa: ANN001 — any HF tokenizer
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    state: dict[str, Any],
    run_config: dict[str, Any],
    weights: bool = True,
) -> Path:
    """Write checkpoint ``step`` into its temporary folder (``state`` must be JSON-able).
    ``weights`` False: leave the model and optimizer files to the caller (a sharded run's
    ``agpo.train.fsdp.save_full``, the same file names, keyed by parameter name)."""
    tmp = tmp_dir(run_dir, step)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if weights:
        from agpo.models import quiet_transformers

        with quiet_transformers():  # no "Writing model shards" bar inside agpo's own progress
            _unwrap(model).save_pretrained(tmp, safe_serialization=True)
        tensors, groups = _optimizer_to_flat(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(groups))
    tokenizer.save_pretrained(tmp)
    save_file({"torch_cpu": torch.get_rng_state(), "sampling": generator.get_state()},
              str(tmp / "rng.safetensors"))
    state = {**state, "step": step, "python_rng": _py_rng_to_json(random.getstate())}
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    (tmp / RUN_CONFIG).write_text(json.dumps(run_config, indent=1))
    return tmp


def rank_rng_file(ckpt: Path, rank: int) -> Path:
    return ckpt / f"rng_rank{rank}.safetensors"


def commit_checkpoint(run_dir: Path, step: int) -> Path:
    """Checksum every file of the temporary folder, then rename it to ``step_N``."""
    tmp = tmp_dir(run_dir, step)
    sums = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file() and p.name != CHECKSUMS}
    (tmp / CHECKSUMS).write_text(json.dumps(sums, indent=1))
    final = checkpoint_path(run_dir, step)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def damage(ckpt: Path) -> str | None:
    """Why checkpoint ``ckpt`` cannot be trusted (a sentence naming the file), or None.

    Checks that every file listed in checksums.json is there with its SHA-256 (a checkpoint
    without one, from an older agpo, only that its JSON parses). Costs one read of the
    checkpoint (≈ 1 s per GB).
    """
    sums_path = ckpt / CHECKSUMS
    try:
        sums = json.loads(sums_path.read_text())
    except FileNotFoundError:  # written by an agpo before checksums: its JSON must still parse
        for name in ("trainer_state.json", "optimizer.json"):
            try:
                json.loads((ckpt / name).read_text())
            except (OSError, ValueError):
                return f"{ckpt / name}: missing or damaged (and no {CHECKSUMS})"
        return None
    except (OSError, ValueError) as e:
        return f"{sums_path}: unreadable ({e})"
    if not isinstance(sums, dict) or "trainer_state.json" not in sums:
        return f"{sums_path}: not a checksum list of an agpo checkpoint"
    for name, digest in sums.items():
        path = ckpt / str(name)
        if not path.is_file():
            return f"{path}: missing"
        if _sha256(path) != digest:
            return f"{path}: damaged (its SHA-256 differs from the one written with it)"
    return None


def newest_intact(run_dir: Path, warn: Callable[[str], None]) -> Path | None:
    """The newest checkpoint without ``damage``; each damaged newer one is reported to ``warn``.

    Raises UserError when checkpoints exist but none is intact (starting over silently would
    discard the run).
    """
    found = checkpoint_dirs(run_dir)
    problems = []
    for _, path in reversed(found):
        why = damage(path)
        if why is None:
            if problems:
                warn(f"resuming from {path.name}, the newest intact checkpoint; skipped: "
                     + "; ".join(problems))
            return path
        problems.append(why)
    if found:
        raise UserError(f"{Path(run_dir) / 'checkpoints'}: no intact checkpoint ("
                        + "; ".join(problems) + ")")
    return None


def load_checkpoint(
    ckpt: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    weights: bool = True,
) -> dict[str, Any]:
    """Restore model weights, optimizer, RNG states in place; return trainer_state.json.
    ``weights`` False: RNG states only (a sharded run restores its weights and optimizer with
    ``agpo.train.fsdp.load_full``). A checkpoint a sharded run wrote (trainer_state ``fsdp``)
    keys its optimizer by parameter name: ``load_full`` restores it, also into a plain model.

    A file that does not load (safetensors or JSON errors) is a UserError naming it.
    """
    with _names_file(ckpt):
        state = json.loads((ckpt / "trainer_state.json").read_text())
        if weights and state.get("fsdp"):
            from agpo.train.fsdp import load_full

            load_full(_unwrap(model), optimizer, ckpt)
        elif weights:
            _load_weights(_unwrap(model), ckpt)
            groups = json.loads((ckpt / "optimizer.json").read_text())
            optimizer.load_state_dict(_optimizer_from_flat(load_file(str(ckpt / "optimizer.safetensors")), groups))
        rng = load_file(str(ckpt / "rng.safetensors"))
    torch.set_rng_state(rng["torch_cpu"])
    generator.set_state(rng["sampling"])
    random.setstate(_py_rng_from_json(state["python_rng"]))
    return state


def load_run_config(ckpt: Path) -> dict[str, Any] | None:
    """The run config a checkpoint was written with (None for checkpoints that predate it)."""
    path = ckpt / RUN_CONFIG
    if not path.is_file():
        return None
    with _names_file(ckpt):
        return json.loads(path.read_text())


class _names_file:  # noqa: N801 — used as a context manager
    """Turn the errors of reading a damaged checkpoint into one line naming the checkpoint."""

    def __init__(self, ckpt: Path) -> None:
        self.ckpt = ckpt

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, err: BaseException | None, tb: object) -> bool:
        if isinstance(err, (SafetensorError, json.JSONDecodeError, KeyError, OSError)):
            raise UserError(f"{self.ckpt}: cannot be loaded ({type(err).__name__}: {err})") from None
        return False


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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
