"""What a run needs before its first step: processes, models, data order, the run directory."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import torch

from agpo.errors import UserError
from agpo.io import DirLock, env_info, replace_text
from agpo.models.precision import Precision, check_lr_moves_weights, resolve_precision
from agpo.train.config import ModelConfig, RunConfig, TaskConfig
from agpo.train.dist import Dist
from agpo.types import TaskItem


# ---------------------------------------------------------------------------------------------
# models


def training_precision(spec: str, device: torch.device, main: bool = True) -> Precision:
    """The precision --model.dtype ``spec`` trains in on ``device``: ``bf16`` means bf16-mixed
    (float32 master weights; agpo.models.precision); ``auto`` is decided here, once, and printed
    with its reason (by the main process, as is the warning that bf16 is slow on this device)."""
    def say(msg: str) -> None:
        if main:
            print(msg, file=sys.stderr)

    precision = resolve_precision("bf16-mixed" if spec == "bf16" else spec, device, flag="--model.dtype",
                                  warn=lambda msg: say(f"warning: {msg}"))
    if spec == "auto":
        say(f"--model.dtype auto: {precision.name} ({precision.reason.removeprefix('auto: ')})")
    return precision


def load_models(cfg: ModelConfig, need_ref: bool, seed: int, device: torch.device,
                precision: Precision | None = None, lr: float | None = None,
                ) -> tuple[torch.nn.Module, Any, torch.nn.Module | None]:
    """(policy, tokenizer, reference or None) of --model.path through ``agpo.models.load``
    (``seed`` initialises 'tiny' only) with the parameter dtype of ``precision`` (default: that
    of --model.dtype here). The reference is a frozen copy, or with LoRA the policy itself with
    adapters disabled (``ref is policy``: the loop disables them). bf16-pure with an ``lr`` that
    cannot move its weights is refused (``check_lr_moves_weights``)."""
    from agpo.models import enable_activation_checkpointing, load, quiet_transformers

    precision = precision or training_precision(cfg.dtype, device)
    policy, tokenizer = load(cfg.path, device=device, dtype=precision.name, seed=seed,
                             flag="--model.path")
    if lr is not None:
        check_lr_moves_weights(policy, lr, precision, flag="--optim.lr")
    if cfg.gradient_checkpointing:
        enable_activation_checkpointing(policy)
    if cfg.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        with quiet_transformers():
            policy = get_peft_model(policy, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                                                       target_modules=list(cfg.lora_targets)))
        return policy, tokenizer, (policy if need_ref else None)
    ref = None
    if need_ref:
        ref = copy.deepcopy(policy).eval()
        ref.requires_grad_(False)
    return policy, tokenizer, ref


# ---------------------------------------------------------------------------------------------
# data


def load_items(cfg: TaskConfig, split: str, limit: int, eval_task: bool = False) -> list[TaskItem]:
    from agpo.tasks import load_task

    spec = (cfg.eval_spec or cfg.spec) if eval_task else cfg.spec
    items = load_task(spec, split, fields=cfg.fields or None, limit=limit or None)
    if not items:
        flag = "--task.eval-split" if eval_task else "--task.split"
        raise UserError(f"--task.spec {spec} {flag} {split}: no problems")
    return items


class PromptStream:
    """Training prompts in a seeded order, reshuffled every pass; the cursor is checkpointed.

    Every process walks the same global order; process r of W takes rows [r·b, (r+1)·b) of each
    global batch of W·b prompts, so the union over processes is the single-process batch.
    """

    def __init__(self, items: list[TaskItem], seed: int) -> None:
        self.items, self.seed = items, seed
        self.consumed = 0

    def next(self, count: int) -> list[TaskItem]:
        out = [self._at(self.consumed + i) for i in range(count)]
        self.consumed += count
        return out

    def _at(self, i: int) -> TaskItem:
        n = len(self.items)
        epoch, pos = divmod(i, n)
        if getattr(self, "_epoch", None) != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order, self._epoch = torch.randperm(n, generator=g).tolist(), epoch
        return self.items[self._order[pos]]

    def state_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "seed": self.seed, "size": len(self.items)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.consumed = int(state["consumed"])


# ---------------------------------------------------------------------------------------------
# run directory


def require_run_dir(out: Path) -> None:
    """``--resume DIR`` needs a run directory (one with a config.yaml)."""
    if not (out / "config.yaml").is_file():
        raise UserError(f"--resume {out}: not a run directory (no config.yaml)")


def require_new_out(out: Path) -> None:
    """A new run needs an absent or empty ``--out`` (a directory, not a file): the one check,
    made by the command line before any work and by ``Run.start`` again once it holds the
    directory's lock (a run that started meanwhile)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a directory for the run")
    if not DirLock.empty(out):
        raise UserError(f"--out {out}: directory is not empty; choose a new one or --resume {out}")


def write_env(out: Path, cfg: RunConfig, d: Dist, device: torch.device,
              precision: Precision | None = None) -> None:
    """env.json: versions, a hostname-free hardware summary, and the precision that ran (with
    why, e.g. what --model.dtype auto found) and whether FSDP sharded it, for provenance
    (atomic)."""
    env = env_info(device, seed=cfg.train.seed, world_size=d.world)
    if precision is not None:
        env.update(precision=precision.name, precision_reason=precision.reason, fsdp=cfg.train.fsdp)
    replace_text(out / "env.json", json.dumps(env, indent=1) + "\n")
