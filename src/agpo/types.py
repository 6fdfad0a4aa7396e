"""Shared containers and the shape vocabulary used everywhere in agpo.

Shapes: B prompts, G samples per prompt, N = B·G sequences, T response tokens, P prompt tokens,
V vocabulary. Sequences of one group are contiguous: row ``b * G + g`` is sample g of prompt b.
One spelling per concept: logprobs, old_logprobs, ref_logprobs, response_mask, scores, advantages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


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
