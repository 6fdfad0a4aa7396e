"""Supervised next-token training of a causal LM on (context, target) token sequences — one loop
for every warm start and pretraining phase: a corpus is examples with an empty context, a
labelled pair is its prompt as context and its answer as target.

The loss is the seq-mean-token-mean NLL over target tokens: each example weighs the same, so a
one-token label weighs as much as a 30-token corpus line instead of being drowned by it.
``context_weight`` adds the same mean over context tokens (cheap language modelling of the
prompts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Example = tuple[Sequence[int], Sequence[int]]
"""(context token ids, target token ids); the loss covers the target (and, weighted, the context)."""


@dataclass(frozen=True)
class SFTConfig:
    """One phase of supervised training."""

    steps: int = 500
    """Optimiser steps."""
    batch_size: int = 32
    """Examples per step (drawn with replacement, by ``weights`` when given)."""
    lr: float = 3e-3
    """AdamW peak learning rate; linear warm-up, then cosine decay to 0."""
    warmup: float = 0.1
    """Share of the steps spent warming up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    context_weight: float = 0.0
    """Weight of the mean NLL over context tokens (0: targets only)."""
    seed: int = 0
    """Batch-order seed."""

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0 or not 0 <= self.warmup < 1:
            raise ValueError("SFT: steps ≥ 0, batch_size ≥ 1, lr > 0 and 0 ≤ warmup < 1")


def pack(examples: Sequence[Example], pad_id: int) -> tuple[torch.Tensor, ...]:
    """Right-padded ids [b, L], attention mask [b, L], and flags [b, L] of target and of context
    tokens. Right padding with default positions equals the sampler's left padding with
    positions counted over real tokens, so training sees what sampling will show."""
    width = max(len(c) + len(t) for c, t in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(examples), width, dtype=torch.long)
    is_target = torch.zeros(len(examples), width, dtype=torch.bool)
    is_context = torch.zeros(len(examples), width, dtype=torch.bool)
    for r, (c, t) in enumerate(examples):
        n = len(c) + len(t)
        ids[r, :n] = torch.tensor([*c, *t], dtype=torch.long)
        mask[r, :n] = 1
        is_context[r, : len(c)] = True
        is_target[r, len(c): n] = True
    return ids, mask, is_target, is_context


def sequence_nll(model: torch.nn.Module, examples: Sequence[Example], pad_id: int,
                 context_weight: float = 0.0) -> torch.Tensor:
    """Scalar loss of one batch: mean over examples of the mean target-token NLL, plus
    ``context_weight`` × the same over context tokens (the first token has no prediction and
    is never scored)."""
    ids, mask, is_target, is_context = pack(examples, pad_id)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # [b, L-1, V]
    nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # [b, L-1]

    def seq_mean(flags: torch.Tensor) -> torch.Tensor:
        f = flags[:, 1:].float()  # [b, L-1]
        per_seq = (nll * f).sum(1) / f.sum(1).clamp(min=1.0)  # [b]
        has = f.sum(1) > 0
        return per_seq[has].mean() if bool(has.any()) else nll.new_zeros(())

    loss = seq_mean(is_target)
    if context_weight:
        loss = loss + context_weight * seq_mean(is_context)
    return loss


def sft(
    model: torch.nn.Module,
    examples: Sequence[Example],
    cfg: SFTConfig,
    *,
    pad_id: int,
    weights: Sequence[float] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` in place for ``cfg.steps`` steps; returns the loss of every step.

    ``weights`` (one per example) set how often each example is drawn — e.g. a labelled set
    mixed with a replayed corpus at a chosen share.
    """
    from transformers import get_cosine_schedule_with_warmup

    if not examples or cfg.steps == 0:
        return []
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, max(1, int(cfg.warmup * cfg.steps)), cfg.steps)
    g = torch.Generator().manual_seed(cfg.seed)
    probs = torch.tensor(weights if weights is not None else [1.0] * len(examples), dtype=torch.float)
    losses: list[float] = []
    model.train()
    for step in range(cfg.steps):
        idx = torch.multinomial(probs, cfg.batch_size, replacement=True, generator=g).tolist()
        loss = sequence_nll(model, [examples[i] for i in idx], pad_id, cfg.context_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))  # one sync per step: the progress bar shows it
        if progress is not None:
            progress(step + 1, losses[-1])
    model.eval()
    return losses
