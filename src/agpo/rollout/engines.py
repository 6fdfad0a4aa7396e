"""Rollout engines: who turns prompts into a Rollout. The sampling phase and the eval runner ask
an Engine; which one is a config value (``--rollout.engine``), never a branch in the loop.

Every engine is an entry of ``ENGINES`` (an ``agpo.registry.Registry``), the one list of engine
names: a factory ``(model, tokenizer, cfg) → Engine`` registered with its ``EngineProps``.

- ``transformers``: agpo's own sampler (rollout/sampler.py) on the policy module itself, so it
  always samples the current weights and its log-probs are the trainer's own computation.
- ``vllm``: a vLLM engine in the same process (rollout/vllm.py registers it; vLLM itself is
  imported only when it runs). It holds its own copy of the weights; it compares the policy's
  parameter versions before each sampling and pushes the weights when they changed, which is
  the same as pushing after every optimizer step (nothing samples in between). Its log-probs
  come from other kernels, so they are not the trainer's (``exact_logprobs`` False): training
  logs the gap to the trainer's π_old, which the update computes itself whatever the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from agpo.configs import flag, require_name
from agpo.registry import Registry
from agpo.rollout.sampler import sample
from agpo.types import Rollout

if TYPE_CHECKING:
    from agpo.rollout.config import SamplingConfig


class Engine(Protocol):
    """Samples responses from the current policy."""

    exact_logprobs: bool
    """True when the Rollout's log-probs are what the trainer computes for the same tokens."""

    def sample(self, prompts: Sequence[str], temperatures: torch.Tensor, cfg: SamplingConfig,
               generator: torch.Generator | None = None) -> Rollout:
        """One response per prompt (prompts repeated G times, grouped); temperatures [N].
        Returns the Rollout of rollout.sampler.sample: [N, P] prompts, [N, T] responses."""
        ...

    def close(self) -> None:
        """Free what the engine holds (a vLLM engine's KV cache and weight copy)."""
        ...


class EngineFactory(Protocol):
    def __call__(self, model: torch.nn.Module, tokenizer: Any, cfg: SamplingConfig) -> Engine: ...


@dataclass(frozen=True)
class EngineProps:
    """What a config naming the engine must check before any work starts."""

    check: Callable[[str], None] | None = None
    """Raises a UserError naming the flag (its argument, e.g. ``--rollout.engine vllm``) when
    the engine cannot run in this environment (a package not installed); None: always runs."""


ENGINES: Registry[EngineFactory] = Registry("rollout engine", EngineFactory, EngineProps)


def require_engine(name: str, path: str) -> None:
    """A ConfigError naming the flag of config field ``path`` (``rollout.engine``) unless
    ``name`` is a registered engine that can run here."""
    require_name(name, ENGINES.names(), path)
    check = ENGINES.props(name).check
    if check is not None:
        check(f"{flag(path)} {name}")


def build_engine(name: str, model: torch.nn.Module, tokenizer: Any, cfg: SamplingConfig) -> Engine:
    """The engine called ``name`` (a name in ``ENGINES``) sampling from ``model``."""
    return ENGINES.get(name)(model, tokenizer, cfg)


@dataclass
class TransformersEngine:
    """agpo's sampler on the policy module itself (see rollout/sampler.py)."""

    model: torch.nn.Module
    tokenizer: Any
    exact_logprobs: bool = True

    def sample(self, prompts: Sequence[str], temperatures: torch.Tensor, cfg: SamplingConfig,
               generator: torch.Generator | None = None) -> Rollout:
        return sample(self.model, self.tokenizer, prompts, temperatures, cfg, generator)

    def close(self) -> None:
        pass


@ENGINES.register("transformers", EngineProps())
def _transformers(model: torch.nn.Module, tokenizer: Any, cfg: SamplingConfig) -> Engine:
    return TransformersEngine(model, tokenizer)
