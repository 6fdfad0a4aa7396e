"""Sampling settings: the ``rollout`` section of the run config."""

from __future__ import annotations

from dataclasses import dataclass

from agpo.errors import UserError


@dataclass(frozen=True)
class SamplingConfig:
    """How responses are sampled (training rollouts and evaluation)."""

    max_new_tokens: int = 64
    """Generation stops after this many new tokens; a response cut here is marked truncated."""
    top_p: float = 1.0
    """Nucleus sampling mass. Training requires 1.0 (see --rollout.allow-top-p-in-training)."""
    temperature: float = 1.0
    """Base sampling temperature τ; logits are divided by τ (AGPO-adaptive's τ_base)."""
    batch_size: int = 256
    """Sequences decoded together in one KV-cached batch (bounds memory; not a training size)."""
    allow_top_p_in_training: bool = False
    """Let training sample with top-p < 1 although the importance ratio then compares a
    truncated sampling distribution against the full one."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError("--rollout.max-new-tokens must be ≥ 1")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError("--rollout.top-p must be in (0, 1]")
        if self.temperature <= 0.0:
            raise UserError("--rollout.temperature must be > 0 (use a small value for near-greedy)")
        if self.batch_size < 1:
            raise UserError("--rollout.batch-size must be ≥ 1")
