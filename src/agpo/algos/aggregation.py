"""Loss aggregation: per-token loss [N, T] → scalar, normalised by *global* counts.

A mini-batch is split into micro-batches (and across processes); each micro-batch's scalar is
backpropagated and the gradients add up. For the sum to equal the whole mini-batch's loss, every
mode divides by counts of the whole mini-batch (``LossNorm``), never by the micro-batch's own.
That is what makes results independent of micro-batch size and of the number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from agpo.ops import masked_mean, masked_sum
from agpo.registry import Registry


@dataclass(frozen=True)
class LossNorm:
    """Counts over the whole mini-batch (all micro-batches, all processes).

    tokens: number of response tokens in the loss (masked, kept); sequences: number of
    sequences in the loss; max_len: the response length L_max of Dr.GRPO's constant normaliser
    (the generation budget, max_new_tokens). Floats or 0-d tensors (an all-reduced count can
    stay on the device; no host sync needed).
    """

    tokens: float | torch.Tensor
    sequences: float | torch.Tensor
    max_len: int

    @classmethod
    def from_mask(cls, response_mask: torch.Tensor, max_len: int | None = None) -> LossNorm:
        """Counts of one whole (local) mini-batch. response_mask [N, T] (already × keep).

        Sequences count the rows with at least one token, so a response dropped by PSR/NSR
        (mask all 0) leaves the denominator too. max_len defaults to T. Across processes,
        all-reduce ``tokens`` and ``sequences`` (sum) before use.
        """
        mask = response_mask.to(torch.float32)
        return cls(
            tokens=mask.sum(),
            sequences=(mask.sum(dim=-1) > 0).to(torch.float32).sum(),
            max_len=int(response_mask.shape[-1]) if max_len is None else max_len,
        )


class AggregationFn(Protocol):
    def __call__(
        self, per_token: torch.Tensor, response_mask: torch.Tensor, norm: LossNorm
    ) -> torch.Tensor: ...


AGGREGATIONS: Registry[AggregationFn] = Registry("aggregation", AggregationFn)


def _safe(count: float | torch.Tensor) -> float | torch.Tensor:
    # An empty mini-batch (everything dropped) gives loss 0, not NaN.
    return count.clamp_min(1.0) if isinstance(count, torch.Tensor) else max(count, 1.0)


@AGGREGATIONS.register("token_mean")
def token_mean(
    per_token: torch.Tensor, response_mask: torch.Tensor, norm: LossNorm
) -> torch.Tensor:
    """DAPO's token-mean: Σ masked loss / global token count. per_token, response_mask: [N, T]."""
    return masked_sum(per_token, response_mask.to(per_token.dtype)) / _safe(norm.tokens)


@AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(
    per_token: torch.Tensor, response_mask: torch.Tensor, norm: LossNorm
) -> torch.Tensor:
    """GRPO's: mean over each sequence's own tokens, then Σ over sequences / global sequences.

    A sequence's token mean needs only its own row, so it is exact within any micro-batch.
    Rows with an empty mask contribute 0. per_token, response_mask: [N, T].
    """
    per_seq = masked_mean(per_token, response_mask, dim=-1)  # [N]
    return per_seq.sum() / _safe(norm.sequences)


@AGGREGATIONS.register("seq_mean_token_sum")
def seq_mean_token_sum(
    per_token: torch.Tensor, response_mask: torch.Tensor, norm: LossNorm
) -> torch.Tensor:
    """Σ over each sequence's tokens, then Σ over sequences / global sequences. [N, T] → scalar."""
    per_seq = masked_sum(per_token, response_mask.to(per_token.dtype), dim=-1)  # [N]
    return per_seq.sum() / _safe(norm.sequences)


@AGGREGATIONS.register("constant")
def constant(per_token: torch.Tensor, response_mask: torch.Tensor, norm: LossNorm) -> torch.Tensor:
    """Dr.GRPO's constant normaliser: Σ masked loss / (global sequences · L_max).

    Unlike token_mean, a long response's tokens are not down-weighted by the batch's length.
    per_token, response_mask: [N, T].
    """
    total = masked_sum(per_token, response_mask.to(per_token.dtype))
    return total / (_safe(norm.sequences) * max(norm.max_len, 1))
