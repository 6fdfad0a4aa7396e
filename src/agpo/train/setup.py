"""What a run needs before its first step: processes, models, data order, the run directory."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from agpo.errors import UserError
from agpo.io import env_info
# re-exported: agpo.train.state imports resolve_device from here with the other setup steps
from agpo.io import resolve_device as resolve_device
from agpo.train.config import ModelConfig, RunConfig, TaskConfig
from agpo.train.dist import Dist
from agpo.types import TaskItem


# ---------------------------------------------------------------------------------------------
# models


def load_models(cfg: ModelConfig, need_ref: bool, seed: int, device: torch.device):  # noqa: ANN201
    """(policy, tokenizer, reference or None) of --model.path through ``agpo.models.load``
    (``seed`` initialises 'tiny' only). The reference is a frozen copy, or with LoRA the policy
    itself with adapters disabled (``ref is policy``: the loop disables them)."""
    from agpo.models import load

    policy, tokenizer = load(cfg.path, device=device, dtype=cfg.dtype, seed=seed,
                             flag="--model.path")
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    if cfg.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

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


def prepare_run_dir(out: Path, resume: bool) -> None:
    if resume:
        if not (out / "config.yaml").is_file():
            raise UserError(f"--resume {out}: not a run directory (no config.yaml)")
        return
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out}: directory is not empty; choose a new one or --resume {out}")
    out.mkdir(parents=True, exist_ok=True)


def write_env(out: Path, cfg: RunConfig, d: Dist, device: torch.device) -> None:
    """env.json: versions and a hostname-free hardware summary, for provenance."""
    env = env_info(device, seed=cfg.train.seed, world_size=d.world)
    (out / "env.json").write_text(json.dumps(env, indent=1) + "\n")
