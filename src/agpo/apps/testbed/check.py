"""A fast competence check of a testbed model: sample n per problem, score, pass@k.

It samples through ``agpo.rollout.sample`` (the sampler training and ``agpo eval`` use) in one
large batch and scores with ``tasks.score`` in memory: no verifier pool, no samples.jsonl.
``agpo eval`` is the general path (resumable, any task) and agrees with this on the testbed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from agpo.eval.passk import pass_at_k
from agpo.rollout import SamplingConfig, sample
from agpo.tasks import testbed as tasks
from agpo.types import TaskItem


@dataclass
class QuickEval:
    """Per-problem correct counts and the pass@k table of one model on testbed items."""

    n: int
    correct: list[int]
    is_s: list[bool]
    share_b: float

    def passk(self, k: int, subset: str | None = None) -> float:
        """Mean unbiased pass@k over the problems (``subset``: "S", "non-S" or None for all)."""
        rows = [
            c
            for c, s in zip(self.correct, self.is_s, strict=True)
            if subset is None or (subset == "S") == s
        ]
        return sum(pass_at_k(self.n, c, k) for c in rows) / max(1, len(rows))


def quick_eval(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    items: Sequence[TaskItem],
    n: int,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    max_new_tokens: int = 12,
    batch_size: int = 4096,
) -> QuickEval:
    """Sample n completions for every item and count exact answers (``tasks.score``)."""
    gen = torch.Generator().manual_seed(seed)
    prompts = [it.prompt for it in items for _ in range(n)]  # grouped: row i*n+j
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                         batch_size=batch_size)
    temps = torch.full((len(prompts),), temperature)  # [N]
    texts = sample(model, tok, prompts, temps, cfg, gen).texts
    correct = [
        sum(tasks.score(it, t) for t in texts[i * n : (i + 1) * n]) for i, it in enumerate(items)
    ]
    share_b = sum(tasks.strategy_of(t) == "B" for t in texts) / max(1, len(texts))
    return QuickEval(n, [int(c) for c in correct], [bool(it.meta["is_s"]) for it in items], share_b)
