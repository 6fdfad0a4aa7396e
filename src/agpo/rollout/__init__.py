"""agpo.rollout — sampling: turn prompts into a Rollout of responses with their log-probs.

engines   the Engine protocol and ENGINES, the registry of engines (``--rollout.engine``)
sampler   agpo's own KV-cached sampler, the ``transformers`` engine (always available)
vllm      the ``vllm`` engine (vLLM imported only when it runs, so agpo runs without it)
config    SamplingConfig, the ``rollout`` section of a run config

Scoring sampled tokens under the policy (log-probs, entropy, the prompt cache) is agpo.policy.
"""

from agpo.rollout import vllm as _vllm  # noqa: F401 — registers the "vllm" engine
from agpo.rollout.config import SamplingConfig
from agpo.rollout.engines import ENGINES, Engine, EngineProps, TransformersEngine, build_engine, require_engine
from agpo.rollout.sampler import sample

__all__ = ["ENGINES", "Engine", "EngineProps", "SamplingConfig", "TransformersEngine", "build_engine",
           "require_engine", "sample"]
