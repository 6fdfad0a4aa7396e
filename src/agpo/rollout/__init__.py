"""Rollout: sample responses from a causal LM and score their tokens (log-probs, entropy).

Engines (``--rollout.engine``): ``transformers`` (agpo's sampler, always available) and ``vllm``
(rollout/vllm.py, imported only when chosen, so agpo runs without vLLM installed).
"""

from agpo.rollout.config import SamplingConfig
from agpo.rollout.engine import concat, sample, select, token_logprobs
from agpo.rollout.engines import ENGINES, Engine, TransformersEngine, build_engine

__all__ = ["ENGINES", "Engine", "SamplingConfig", "TransformersEngine", "build_engine", "concat",
           "sample", "select", "token_logprobs"]
