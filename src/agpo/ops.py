"""Masked tensor helpers shared by every stage. None of them produces NaN on an empty mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``x`` where ``mask`` is 1. x, mask: same shape (e.g. [N, T])."""
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(
    x: torch.Tensor, mask: torch.Tensor, dim: int | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` is 1; 0 (not NaN) where the mask is empty.

    x, mask: same shape, e.g. [N, T]; ``dim=-1`` gives one value per row [N].
    """
    mask = mask.to(x.dtype)
    return masked_sum(x, mask, dim) / mask.sum(dim).clamp_min(eps) if dim is not None else (
        masked_sum(x, mask) / mask.sum().clamp_min(eps)
    )


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """Variance of the masked entries of ``x`` (scalar); 0 on fewer than 2 entries."""
    mask = mask.to(x.dtype)
    n = mask.sum()
    mean = masked_sum(x, mask) / n.clamp_min(1.0)
    ss = masked_sum((x - mean) ** 2, mask)
    denom = (n - 1.0) if unbiased else n
    return torch.where(denom > 0, ss / denom.clamp_min(1.0), torch.zeros_like(ss))


def logprobs_from_logits(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Log-probability of ``ids`` under ``logits``. logits [N, T, V], ids [N, T] → [N, T].

    Computed as gathered logit minus logsumexp, so no full-vocabulary log-softmax tensor is
    materialised beyond the logits themselves.
    """
    picked = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # [N, T]
    return (picked - torch.logsumexp(logits, dim=-1)).float()


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Token entropy of softmax(logits). logits [N, T, V] → [N, T] (nats)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)
