"""Rollout: sample responses from a causal LM and score their tokens (log-probs, entropy)."""

from agpo.rollout.config import SamplingConfig
from agpo.rollout.engine import concat, sample, score, select

__all__ = ["SamplingConfig", "concat", "sample", "score", "select"]
