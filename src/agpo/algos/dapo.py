"""DAPO's batch-level tricks (arXiv 2503.14476): dynamic sampling and overlong reward shaping.

Clip-higher is just ``--algo.clip-high 0.28`` on the ppo_clip objective, and token-mean is the
``token_mean`` aggregation; these two helpers are the rest.
"""

from __future__ import annotations

import torch


def informative_groups(scores: torch.Tensor) -> torch.Tensor:
    """Dynamic-sampling filter: scores [B, G] → keep [B] (bool).

    A group is informative when its scores are not all equal (for binary scores: 0 < correct <
    G); all-equal groups have zero group-relative advantage and only dilute the batch. The loop
    over-generates until the batch is full (``--algo.max-sampling-rounds``); every generated
    token, kept or not, counts toward the token budget.
    """
    if scores.shape[-1] == 0:
        return torch.zeros(scores.shape[:-1], dtype=torch.bool, device=scores.device)
    return (scores != scores[..., :1]).any(dim=-1)


def overlong_penalty(lengths: torch.Tensor, max_len: int, cache: int) -> torch.Tensor:
    """Soft overlong punishment added to the reward: lengths [N] → penalty [N] (≤ 0).

    penalty = min(−(|y| − (L_max − L_cache)) / L_cache, 0): 0 up to L_max − L_cache tokens, then
    linear down to −1 at L_max (and below −1 past it; a truncated response is at most L_max).
    ``cache = 0`` disables the shaping (all zeros).
    """
    if cache <= 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    if cache > max_len:
        raise ValueError(f"overlong cache ({cache}) must not exceed max_len ({max_len})")
    excess = lengths.to(torch.float32) - (max_len - cache)
    return torch.clamp(-excess / cache, max=0.0)
