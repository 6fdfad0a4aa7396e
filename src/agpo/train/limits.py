"""The limits that end a run (--train.steps, --train.token-budget): one rule, read by the loop,
by a resume before it starts, and by the applications that train to the end."""

from __future__ import annotations

import json
from pathlib import Path

from agpo.errors import UserError
from agpo.train import checkpoint as ckpt
from agpo.train.config import TrainConfig


def stop_reason(train: TrainConfig, step: int, tokens: int) -> str | None:
    """The limits that end a run at ``step`` after ``tokens`` generated tokens, each with its
    flag ("--train.token-budget 2048 reached (2,274 tokens)"); None while the run goes on."""
    reached = []
    if step >= train.steps:
        reached.append(f"--train.steps {train.steps} reached")
    if 0 < train.token_budget <= tokens:
        reached.append(f"--train.token-budget {train.token_budget} reached ({tokens:,} tokens)")
    return " and ".join(reached) or None


def require_a_step(run_dir: Path, train: TrainConfig) -> None:
    """UserError (``cannot_continue``) when the checkpoint a resume starts from has reached a
    limit of ``train``. Reads the newest checkpoint's state; its checksums only when refusing
    (a damaged one is skipped by the resume, and an older one may still take steps)."""
    last = ckpt.latest_checkpoint(run_dir)
    try:
        state = json.loads((last / "trainer_state.json").read_text()) if last is not None else None
        step, tokens = int(state["step"]), int(state["tokens_total"])
    except (OSError, ValueError, TypeError, KeyError):
        return  # no checkpoint, or a damaged one: Run.start reports it or falls back
    reason = stop_reason(train, step, tokens)
    if reason and ckpt.newest_intact(run_dir, lambda _: None) == last:
        raise UserError(cannot_continue(run_dir, train, step, tokens, reason))


def cannot_continue(run_dir: Path, train: TrainConfig, step: int, tokens: int, reason: str) -> str:
    """Why resuming ``run_dir`` (its checkpoint at ``step``, ``tokens`` generated) adds no step,
    and the flags that lift the limits."""
    lift = []
    if step >= train.steps:
        lift.append(f"--train.steps above {step}")
    if 0 < train.token_budget <= tokens:
        lift.append(f"--train.token-budget above {tokens} (0: no budget)")
    return (f"{run_dir}: nothing to resume: its checkpoint stopped at step {step}: {reason}; to "
            f"continue, give {' and '.join(lift)}")


def checkpoint_stop_reason(checkpoint: Path, train: TrainConfig) -> str | None:
    """``stop_reason`` of the run state saved in ``checkpoint`` (a step_N folder)."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return stop_reason(train, int(state["step"]), int(state["tokens_total"]))
