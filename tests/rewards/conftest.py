"""Shared verifiers for the reward tests: worker start-up costs about a second, so each pool is
started once per session and reused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agpo.rewards import RewardConfig, RewardFn, build_reward

@pytest.fixture(scope="session")
def math_reward() -> Iterator[RewardFn]:
    """The default math verifier: 2 workers, 5 s deadline."""
    with build_reward(RewardConfig(verifier="math", workers=2, timeout_s=5.0)) as reward:
        yield reward


@pytest.fixture(scope="session")
def strict_reward() -> Iterator[RewardFn]:
    """One worker, a 1 s deadline, no cache: for hostile inputs and recovery tests."""
    cfg = RewardConfig(verifier="math", workers=1, timeout_s=1.0, cache_size=0)
    with build_reward(cfg) as reward:
        yield reward
