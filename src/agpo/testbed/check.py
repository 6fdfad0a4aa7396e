"""A fast competence check of a testbed model: sample n per problem, score, pass@k.

The testbed's completions are at most a dozen tokens, so a plain KV-cached sampling loop over
all n·problems rows in large chunks is the cheapest honest measurement; ``agpo eval`` is the
general path (resumable, any task) and agrees with this on the testbed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from agpo.testbed import tasks
from agpo.types import TaskItem


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k, stable product form: 1 − Π_{i=n−c+1}^{n} (1 − k/i)."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


@torch.no_grad()
def sample_texts(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    chunk: int = 4096,
) -> list[str]:
    """One completion per prompt (prompts of equal length: no padding), decoded up to EOS."""
    out: list[str] = []
    for lo in range(0, len(prompts), chunk):
        ids = torch.tensor([tok.encode(p) for p in prompts[lo : lo + chunk]])  # (n, P)
        res = model(input_ids=ids, use_cache=True)
        past, logits = res.past_key_values, res.logits[:, -1]
        done = torch.zeros(ids.shape[0], dtype=torch.bool)
        toks: list[torch.Tensor] = []
        for _ in range(max_new_tokens):
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (n,)
            nxt = torch.where(done, tok.pad_token_id, nxt)
            toks.append(nxt)
            done |= nxt == tok.eos_token_id
            if bool(done.all()):
                break
            res = model(input_ids=nxt[:, None], past_key_values=past, use_cache=True)
            past, logits = res.past_key_values, res.logits[:, -1]
        out += tok.batch_decode(torch.stack(toks, 1), skip_special_tokens=True)
    return out


@dataclass
class QuickEval:
    """Per-problem correct counts and the pass@k table of one model on testbed items."""

    n: int
    correct: list[int]
    is_s: list[bool]
    share_b: float

    def passk(self, k: int, subset: str | None = None) -> float:
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
) -> QuickEval:
    """Sample n completions for every item and count exact answers (``tasks.score``)."""
    gen = torch.Generator().manual_seed(seed)
    prompts = [it.prompt for it in items for _ in range(n)]
    texts = sample_texts(
        model, tok, prompts, max_new_tokens=max_new_tokens, temperature=temperature, generator=gen
    )
    correct = [
        sum(tasks.score(it, t) for t in texts[i * n : (i + 1) * n]) for i, it in enumerate(items)
    ]
    share_b = sum(tasks.strategy_of(t) == "B" for t in texts) / max(1, len(texts))
    return QuickEval(n, [int(c) for c in correct], [bool(it.meta["is_s"]) for it in items], share_b)
