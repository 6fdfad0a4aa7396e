"""Rollout engines: who turns prompts into a Rollout. The sampling phase and the eval runner ask
an Engine; which one is a config value (``--rollout.engine``), never a branch in the loop.

- ``transformers``: agpo's own sampler (rollout/engine.py) on the policy module itself, so it
  always samples the current weights and its log-probs are the trainer's own computation.
- ``vllm``: a vLLM engine in the same process (rollout/vllm.py, imported only when chosen). It
  holds its own copy of the weights; it compares the policy's parameter versions before each
  sampling and pushes the weights when they changed, which is the same as pushing after every
  optimizer step (nothing samples in between). Its log-probs come from other kernels, so they are
  not the trainer's (``exact_logprobs`` False): training logs the gap to the trainer's, which
  is what π_old always is (RunConfig.old_logprobs_in_update).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from agpo.rollout.config import SamplingConfig
from agpo.rollout.engine import sample
from agpo.types import Rollout

ENGINES = ("transformers", "vllm")


class Engine(Protocol):
    """Samples responses from the current policy."""

    exact_logprobs: bool
    """True when the Rollout's log-probs are what the trainer computes for the same tokens."""

    def sample(self, prompts: Sequence[str], temperatures: torch.Tensor, cfg: SamplingConfig,
               generator: torch.Generator | None = None) -> Rollout:
        """One response per prompt (prompts repeated G times, grouped); temperatures [N].
        Returns the Rollout of rollout.engine.sample: [N, P] prompts, [N, T] responses."""
        ...

    def close(self) -> None:
        """Free what the engine holds (a vLLM engine's KV cache and weight copy)."""
        ...


@dataclass
class TransformersEngine:
    """agpo's sampler on the policy module itself (see rollout/engine.py)."""

    model: torch.nn.Module
    tokenizer: Any
    exact_logprobs: bool = True

    def sample(self, prompts: Sequence[str], temperatures: torch.Tensor, cfg: SamplingConfig,
               generator: torch.Generator | None = None) -> Rollout:
        return sample(self.model, self.tokenizer, prompts, temperatures, cfg, generator)

    def close(self) -> None:
        pass


def build_engine(name: str, model: torch.nn.Module, tokenizer: Any, cfg: SamplingConfig) -> Engine:
    """The engine called ``name`` (transformers | vllm) sampling from ``model``."""
    if name == "transformers":
        return TransformersEngine(model, tokenizer)
    if name == "vllm":
        from agpo.rollout.config import require_vllm

        require_vllm("engine vllm")
        from agpo.rollout.vllm import VLLMEngine

        return VLLMEngine(model, tokenizer, cfg)
    raise ValueError(f"unknown rollout engine {name!r}; valid: {', '.join(ENGINES)}")
