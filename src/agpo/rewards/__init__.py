"""Verifiable rewards: math answers (math-verify), exact match, labels and output formats.

    from agpo.rewards import RewardConfig, build_reward
    with build_reward(RewardConfig(verifier="math", workers=2)) as reward:
        results = reward.batch(items, completions)   # list[RewardResult], same order

Names are imported lazily (PEP 562) so that ``agpo.rewards.worker`` — preloaded into the
verification worker processes — does not drag torch into them through ``agpo.types``.
"""

from __future__ import annotations

from agpo.lazy import lazy_exports

_EXPORTS = {
    "RewardConfig": "agpo.rewards.config",
    "extract_answer": "agpo.rewards.extract",
    "VERIFIERS": "agpo.rewards.verifiers",
    "BAD_GOLD": "agpo.rewards.verifiers",
    "RewardFn": "agpo.rewards.api",
    "build_reward": "agpo.rewards.api",
    "is_skip": "agpo.rewards.api",
    "WorkerPool": "agpo.rewards.pool",
}

__getattr__, __all__ = lazy_exports("agpo.rewards", _EXPORTS)
