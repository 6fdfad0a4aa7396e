"""KL estimators on sampled tokens (Schulman's k1/k2/k3): [N, T] log-probs → [N, T] penalty.

Δ = log π_θ − log π_ref on the token the policy sampled. Each estimator's expectation under
π_θ relates to KL(π_θ ‖ π_ref): k1 is unbiased but can be negative per token, k2 = Δ²/2 is
low-variance and biased, k3 = e^{−Δ} + Δ − 1 is unbiased-in-expectation and ≥ 0 (GRPO, β 0.04).
Token entropy lives in ``agpo.ops.entropy_from_logits``. Aggregate with ``aggregation.py``.
"""

from __future__ import annotations

from typing import Protocol

import torch

from agpo.registry import Registry

# e^{−Δ} overflows float32 near Δ = −88; clamping Δ at ±20 (e^20 ≈ 5e8) changes nothing a
# healthy run sees and keeps a diverged token from turning the loss into inf.
_K3_CLAMP = 20.0


class KLFn(Protocol):
    def __call__(self, logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor: ...


KL_ESTIMATORS: Registry[KLFn] = Registry("KL estimator", KLFn)


@KL_ESTIMATORS.register("k1")
def k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k1 = Δ = log π_θ − log π_ref. [N, T] → [N, T]. Unbiased; negative on some tokens."""
    return logprobs - ref_logprobs


@KL_ESTIMATORS.register("k2")
def k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k2 = Δ²/2. [N, T] → [N, T]. Non-negative, low variance, biased for large Δ."""
    return 0.5 * (logprobs - ref_logprobs) ** 2


@KL_ESTIMATORS.register("k3")
def k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k3 = e^{−Δ} + Δ − 1. [N, T] → [N, T]. Non-negative; Δ clamped to ±20 against overflow."""
    delta = (logprobs - ref_logprobs).clamp(-_K3_CLAMP, _K3_CLAMP)
    return torch.exp(-delta) + delta - 1.0
