"""Per-token policy objectives: (logprobs, old_logprobs, advantages, ...) → loss [N, T].

The per-token loss (to minimise) is kept apart from its aggregation into a scalar
(aggregation.py), as verl does, so every objective composes with every normalisation.
Stats are detached scalar tensors reduced over the masked tokens of this call; the loop reduces
and logs them once per step (no host sync here).
"""

from __future__ import annotations

from typing import Protocol

import torch

from agpo.ops import masked_mean
from agpo.registry import Registry


class ObjectiveFn(Protocol):
    def __call__(
        self,
        logprobs: torch.Tensor,
        old_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        response_mask: torch.Tensor,
        clip_low: torch.Tensor,
        clip_high: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


OBJECTIVES: Registry[ObjectiveFn] = Registry("objective", ObjectiveFn)


def _per_row(x: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A per-sequence value ([N] tensor or a float) as a column [N, 1] that broadcasts over T."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return x.reshape(-1, 1) if x.ndim == 1 else x


def _stats(clipfrac_low: torch.Tensor, clipfrac_high: torch.Tensor, log_ratio: torch.Tensor,
           mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every objective's stats, detached: the two clip fractions, and approx_kl, k3 of
    KL(π_old ‖ π_θ) on the sampled tokens: (ρ − 1) − log ρ (CleanRL).

    log_ratio, mask: [N, T] (log_ratio 0 off the mask). ratio_max is over masked tokens; 0 on an
    empty mask (ρ > 0 elsewhere, so 0 means "none").
    """
    ratio = torch.exp(log_ratio)
    masked = torch.where(mask.bool(), ratio, torch.zeros_like(ratio)).flatten()
    stats = {
        "clipfrac_low": clipfrac_low,
        "clipfrac_high": clipfrac_high,
        "approx_kl": masked_mean((ratio - 1) - log_ratio, mask),
        "ratio_max": torch.cat([masked, ratio.new_zeros(1)]).amax(),
    }
    return {k: v.detach() for k, v in stats.items()}


@OBJECTIVES.register("ppo_clip")
def ppo_clip(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_low: torch.Tensor,
    clip_high: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip: loss = −min(ρA, clip(ρ, 1 − ε_low, 1 + ε_high)·A), ρ = exp(logprobs − old).

    logprobs, old_logprobs, response_mask: [N, T]; advantages: [N] (one per sequence) or
    [N, T] (token-level, as verl passes them);
    clip_low, clip_high: [N] (a per-group ε repeated over its G rows for the adaptive clip) or
    floats. ε_low < ε_high is DAPO's clip-higher. Returns per-token loss [N, T] (0 off the mask)
    and stats: clipfrac_low / clipfrac_high (share of masked tokens where the lower / upper
    clip is the active branch of the min, i.e. gets no gradient), approx_kl (k3), ratio_max.
    """
    adv = _per_row(advantages, logprobs)  # [N, 1]
    low = 1.0 - _per_row(clip_low, logprobs)
    high = 1.0 + _per_row(clip_high, logprobs)
    on = response_mask.bool()
    # Padding may hold any value (even -inf); zeroing it first keeps the masked sums NaN-free.
    log_ratio = torch.where(on, logprobs - old_logprobs, 0.0)  # [N, T]
    ratio = torch.exp(log_ratio)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, low, high) * adv
    loss = torch.where(on, -torch.minimum(unclipped, clipped), 0.0)
    mask = response_mask.to(logprobs.dtype)
    return loss, _stats(masked_mean(((ratio < low) & (adv < 0)).to(mask.dtype), mask),
                        masked_mean(((ratio > high) & (adv > 0)).to(mask.dtype), mask), log_ratio, mask)


@OBJECTIVES.register("pg")
def pg(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_low: torch.Tensor,
    clip_high: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Plain policy gradient (REINFORCE loss): loss = −A · log π_θ per token, no clipping.

    Shapes as ``ppo_clip``; clip_low / clip_high are accepted for the common signature and
    ignored (clipfrac stats are 0). Its gradient equals PPO-clip's on the first update epoch
    (ρ = 1); it is meant for one on-policy epoch. old_logprobs feed the diagnostics only.
    """
    adv = _per_row(advantages, logprobs)  # [N, 1]
    on = response_mask.bool()
    loss = torch.where(on, -adv * logprobs, 0.0)
    zero = logprobs.new_zeros(())
    return loss, _stats(zero, zero, torch.where(on, logprobs - old_logprobs, 0.0), response_mask.to(logprobs.dtype))
