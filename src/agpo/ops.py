"""Masked tensor helpers shared by every stage. None of them produces NaN on an empty mask."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.utils.checkpoint
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


TEMPERATURE_RANGE = (1e-30, 1e30)
"""The temperatures logits can be divided by: float32 logits times 1/τ stay finite for every
logit below 3e8 in magnitude across this range (float32 ends at 3.4e38). 1e-45 is a float32
denormal whose inverse overflows (NaN samples); 1e300 is not a float32 at all. Configs refuse
temperatures outside it (``agpo.rollout.SamplingConfig``); the sampler and the scoring forward check it."""


def check_temperatures(temperatures: torch.Tensor) -> None:
    """ValueError unless every temperature [N] is in ``TEMPERATURE_RANGE`` (NaN fails too):
    dividing logits by it would give NaN or inf log-probs, never a usable sample."""
    low, high = TEMPERATURE_RANGE
    # In float32, as the logits are divided: the bounds round as the temperatures do.
    t = temperatures.detach().float().cpu()
    bounds = torch.tensor(TEMPERATURE_RANGE, dtype=torch.float32)
    outside = ~((t >= bounds[0]) & (t <= bounds[1]))
    if bool(outside.any()):
        raise ValueError(f"temperature {t[outside].flatten()[0].item():g} is outside [{low:g}, {high:g}], "
                         "where logits/τ stays finite in float32")


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Token entropy of softmax(logits). logits [N, T, V] → [N, T] (nats)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def _token_stats(
    head: Callable[[torch.Tensor], torch.Tensor],
    hidden: torch.Tensor,
    ids: torch.Tensor,
    temperatures: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of ids [c] and entropy [c] under softmax(head(hidden [c, H]) / τ [c])."""
    z = head(hidden).float()  # [c, V]: the only full-vocabulary tensors live here, per chunk
    if temperatures is not None:
        z = z / temperatures.unsqueeze(-1)
    # The formulas of logprobs_from_logits and entropy_from_logits, so the values match theirs.
    return logprobs_from_logits(z, ids), entropy_from_logits(z)


def chunked_logprobs_entropy(
    head: Callable[[torch.Tensor], torch.Tensor],
    hidden: torch.Tensor,
    ids: torch.Tensor,
    temperatures: torch.Tensor | None = None,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of ``ids`` under softmax(head(hidden) / τ), ``chunk`` tokens at a
    time. hidden [M, H], ids [M], temperatures [M] or None (τ = 1) → ([M], [M]) float32.

    ``head`` maps hidden states [c, H] to logits [c, V] (the LM head). Only [chunk, V] logits
    exist at any moment: on a 49k vocabulary 64 rows × 256 tokens would otherwise hold 3.2 GB of
    float32 logits, plus as much again for the softmax. Under autograd each chunk is
    checkpointed: its logits are recomputed in the backward (one more LM-head matmul per
    chunk, a few % of a forward) instead of being kept. The values are those of the whole
    tensor at once: every token's logsumexp runs over its own row.
    """
    grad = torch.is_grad_enabled() and hidden.requires_grad
    lps, ents = [], []
    for s in range(0, ids.shape[0], chunk):
        args = (hidden[s : s + chunk], ids[s : s + chunk],
                None if temperatures is None else temperatures[s : s + chunk])
        if grad:
            lp, ent = torch.utils.checkpoint.checkpoint(_token_stats, head, *args, use_reentrant=False)
        else:
            lp, ent = _token_stats(head, *args)
        lps.append(lp)
        ents.append(ent)
    if not lps:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty.clone()
    return torch.cat(lps), torch.cat(ents)
