"""Shared containers and the shape vocabulary used everywhere in agpo.

Shapes: B prompts, G samples per prompt, N = B·G sequences, T response tokens, P prompt tokens,
V vocabulary. Sequences of one group are contiguous: row ``b * G + g`` is sample g of prompt b.
One spelling per concept: logprobs, old_logprobs, ref_logprobs, response_mask, scores, advantages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TaskItem:
    """One problem: the prompt shown to the model and the gold answer the verifier checks."""

    id: str
    prompt: str
    gold: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RewardResult:
    """A verifier's evidence for one completion, not just a number.

    ``failure`` names why the score is 0 when it is (``"no_answer"``, ``"timeout"``, ...);
    ``parsed`` is the extracted answer as a string (``None`` when nothing was extracted).
    """

    score: float
    parsed: str | None = None
    failure: str | None = None
    components: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Rollout:
    """Sampled responses of one step. All tensors on the same device; rows grouped by prompt.

    prompt_ids, prompt_mask      [N, P]  left-padded prompts
    response_ids, response_mask  [N, T]  right-padded responses; mask is 1 up to and incl. EOS
    logprobs                     [N, T]  log-probs of the sampled tokens under the sampling
                                          distribution softmax(logits / temperature)
    temperatures                 [N]     the temperature each row was sampled at
    truncated                    [N]     True when the response hit max_new_tokens without EOS
    texts                                decoded responses (special tokens stripped), N strings
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    temperatures: torch.Tensor
    truncated: torch.Tensor
    texts: list[str]

    @property
    def num_sequences(self) -> int:
        return self.response_ids.shape[0]

    @property
    def num_generated_tokens(self) -> int:
        return int(self.response_mask.sum())

    # Row operations: the only code that builds a Rollout out of another, field by field.

    def map_tensors(self, fn: Callable[[str, torch.Tensor], torch.Tensor],
                    texts: list[str] | None = None) -> Rollout:
        """A Rollout of ``fn(field name, tensor)`` for every tensor field, and ``texts`` (default:
        these)."""
        tensors = {f.name: fn(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "texts"}
        return Rollout(**tensors, texts=self.texts if texts is None else texts)

    def select(self, index: slice | torch.Tensor | Sequence[int]) -> Rollout:
        """Rows of the rollout (a slice, an index tensor or a list), texts included."""
        if isinstance(index, slice):
            return self.map_tensors(lambda _, x: x[index], self.texts[index])
        idx = index.tolist() if isinstance(index, torch.Tensor) else list(index)
        rows = torch.as_tensor(idx, dtype=torch.long, device=self.response_ids.device)
        return self.map_tensors(lambda _, x: x[rows], [self.texts[i] for i in idx])

    def trim(self, prompt: bool = True) -> Rollout:
        """The same rows without the columns that are padding in every row: leading prompt
        columns (left padding; not with ``prompt=False``) and trailing response columns (past
        every row's end), [n, P'] / [n, T'].

        Exact for a forward: positions count real tokens only and attention is causal, so no
        kept token's logits change; the forward and backward then skip those columns, which
        matters once rows of similar length share a micro-batch. Costs one host sync.
        """
        keep_p = self.prompt_mask.any(0)  # [P]
        keep_t = self.response_mask.any(0)  # [T]
        # At least one prompt column stays: its position predicts the first response token.
        p0 = min(int(keep_p.long().argmax()), max(self.prompt_ids.shape[1] - 1, 0)) if prompt else 0
        t = max(int(keep_t.nonzero().max()) + 1 if bool(keep_t.any()) else 1, 1)
        if p0 == 0 and t == self.response_ids.shape[1]:
            return self
        return self.map_tensors(lambda name, x: x[:, p0:] if name in _PROMPT_COLUMNS
                                else x[:, :t] if name in _RESPONSE_COLUMNS else x)

    @classmethod
    def concat(cls, parts: Sequence[Rollout], pad: int) -> Rollout:
        """Rollouts joined row-wise: prompts re-padded on the left, responses on the right, ids
        with the tokenizer's ``pad`` id, masks and log-probs with 0."""
        if len(parts) == 1:
            return parts[0]
        p = max(r.prompt_ids.shape[1] for r in parts)
        t = max(r.response_ids.shape[1] for r in parts)

        def joined(name: str, _: torch.Tensor) -> torch.Tensor:
            value = pad if name.endswith("_ids") else 0
            if name in _PROMPT_COLUMNS:
                return torch.cat([F.pad(getattr(r, name), (p - r.prompt_ids.shape[1], 0), value=value) for r in parts])
            if name in _RESPONSE_COLUMNS:
                return torch.cat([F.pad(getattr(r, name), (0, t - r.response_ids.shape[1]), value=value) for r in parts])
            return torch.cat([getattr(r, name) for r in parts])

        return parts[0].map_tensors(joined, [s for r in parts for s in r.texts])


_PROMPT_COLUMNS = ("prompt_ids", "prompt_mask")  # [N, P], left-padded
_RESPONSE_COLUMNS = ("response_ids", "response_mask", "logprobs")  # [N, T], right-padded
