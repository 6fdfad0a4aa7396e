"""AGPO-adaptive's control state and the strategies that read it, on the training side: the
formulas are pure functions in agpo.algos.controllers, the state here is what they fold into
(ū, H_ref, KL̄_step) and when.

Timing (it fixes the EMA arithmetic): within one RL step every prompt group's τ and ε are
computed from the state *as it was at the start of the step*, in prompt order; the state is
committed once per RL step (``Control.commit``), after the update. State is a handful of Python
floats, checkpointed with the optimizer: committing converts the step's [B] vectors to lists
once per step (one deliberate host sync per step, never inside the loss).

The trainer does not branch on AGPO-adaptive: ``Control.build`` picks once a temperature
strategy (``FixedTemperature`` / ``AdaptiveTemperature``, asked for τ per prompt by the sampler)
and a clip strategy (``FixedClip`` / ``AdaptiveClip``, asked for ε per row by the loop).
``epsilons`` returns everything its ``commit`` needs (``ClipRange``): nothing is cached between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from agpo.algos.controllers import (
    AdaptiveConfig, ProbeStats, adaptive_epsilons, adaptive_temperatures, ema, ema_fold, expand_groups,
    group_token_mean,
)

if TYPE_CHECKING:
    from agpo.train.config import RunConfig

Gather = Callable[[torch.Tensor], list[float]]
"""A per-prompt value [b] of every process as one list, in global prompt order."""


def _floats(x: torch.Tensor | Sequence[float]) -> list[float]:
    return [float(v) for v in (x.detach().flatten().tolist() if isinstance(x, torch.Tensor) else x)]


# ---------------------------------------------------------------------------------------------
# controllers: running state, checkpointed as {key: value}


class _Baseline:
    """A running baseline of a per-prompt signal: ``value`` (None until the first ``update``),
    folded in prompt order once per RL step by ``ema_fold`` at rate ``_rate()``."""

    key = ""

    def __init__(self, cfg: AdaptiveConfig | None = None) -> None:
        self.cfg = cfg or AdaptiveConfig()
        self.value: float | None = None

    def _rate(self) -> float:
        raise NotImplementedError

    def update(self, values: torch.Tensor | Sequence[float]) -> None:
        """Commit the step's per-prompt values [B] (once per RL step, after the update)."""
        self.value = ema_fold(self.value, _floats(values), self._rate())

    def state_dict(self) -> dict[str, Any]:
        return {self.key: self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = None if state[self.key] is None else float(state[self.key])


class TemperatureController(_Baseline):
    """ū, the running baseline of the probe uncertainty U (EMA at rate α; the first U sets it),
    and τ per prompt from it (``agpo.algos.controllers.adaptive_temperatures``)."""

    key = "baseline"

    def _rate(self) -> float:
        return self.cfg.alpha

    def temperatures(self, uncertainty: torch.Tensor) -> torch.Tensor:
        """τ per prompt, U [B] → τ [B], from ū as it is now (the step's start)."""
        return adaptive_temperatures(uncertainty, self.value, self.cfg)


class ClipController(_Baseline):
    """H_ref, the running reference of π_old's group entropy H (EMA at rate h_ref_alpha), and ε
    per group from it (``agpo.algos.controllers.adaptive_epsilons``)."""

    key = "h_ref"

    def _rate(self) -> float:
        return self.cfg.h_ref_alpha

    def epsilons(self, entropy: torch.Tensor, probe: ProbeStats, step_kl: float | torch.Tensor) -> torch.Tensor:
        """ε per prompt: entropy H [B], probe stats of [B], KL̄_step (scalar) → ε [B]."""
        return adaptive_epsilons(entropy, probe, self.value, step_kl, self.cfg)


class StepKLTracker:
    """KL̄_step: EMA (rate kl_alpha, start 0) of the per-RL-step policy drift (``step_drift``).

    ``observe`` records a drift measured after an optimisation step (no host sync); ``update``
    commits once per RL step the mean of the step's observations. Observing only after the last
    optimisation step reproduces the reference code (drift of π_old against the final π_θ).
    """

    def __init__(self, cfg: AdaptiveConfig | None = None) -> None:
        self.alpha = (cfg or AdaptiveConfig()).kl_alpha
        self.value: float = 0.0
        self._sum: torch.Tensor | None = None
        self._count = 0

    def observe(self, drift: torch.Tensor) -> None:
        drift = drift.detach()
        self._sum = drift if self._sum is None else self._sum + drift
        self._count += 1

    def update(self) -> None:
        """Fold the mean of this step's observations into the EMA; a step without any is a no-op."""
        if self._sum is not None and self._count:
            self.value = ema(self.value, float(self._sum) / self._count, self.alpha)
        self._sum, self._count = None, 0

    def state_dict(self) -> dict[str, Any]:
        return {"kl_step": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["kl_step"])


# ---------------------------------------------------------------------------------------------
# strategies: what the sampler asks for τ and the loop for ε, chosen once per run


class _Temperature:
    """τ per prompt; the uncertainty baseline ū of the probe (``TemperatureController``)."""

    needs_probe = False

    def __init__(self, controller: TemperatureController) -> None:
        self.controller = controller

    def commit(self, probe: ProbeStats | None, gather: Gather) -> None:
        """Fold the step's probe uncertainties U [b] of every process into ū, in prompt order."""
        if probe is not None:
            self.controller.update(gather(probe.uncertainty))


class FixedTemperature(_Temperature):
    """Every prompt at ``tau`` (--rollout.temperature). A probe sampled for the adaptive clip
    still moves ū (logged as ctrl/u_baseline); τ does not follow it."""

    def __init__(self, tau: float, controller: TemperatureController) -> None:
        super().__init__(controller)
        self.tau = tau

    def temperatures(self, probe: ProbeStats | None, prompts: int) -> torch.Tensor:
        """τ per prompt [b]."""
        return torch.full((prompts,), self.tau)


class AdaptiveTemperature(_Temperature):
    """AGPO-adaptive: each prompt's τ from its probe's uncertainty and ū of the step start."""

    needs_probe = True

    def temperatures(self, probe: ProbeStats | None, prompts: int) -> torch.Tensor:
        """τ per prompt [b]."""
        assert probe is not None, "the adaptive temperature needs the probe"
        return self.controller.temperatures(probe.uncertainty)


@dataclass(frozen=True)
class ClipRange:
    """A step's clip range per row, and what the clip strategy's ``commit`` needs from it."""

    low: torch.Tensor
    """[N] ε_low per row (a group's ε repeated over its G rows)."""
    high: torch.Tensor
    """[N] ε_high per row."""
    group_entropy: torch.Tensor | None = None
    """[B] π_old's mean token entropy H per group, the adaptive clip's input (None: fixed clip)."""


class FixedClip:
    """ε_low / ε_high for every row (--algo.clip-low / --algo.clip-high; DAPO's clip-higher
    when they differ); nothing to commit."""

    needs_probe = False
    needs_drift = False

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def epsilons(self, entropy: torch.Tensor | None, response_mask: torch.Tensor,
                 probe: ProbeStats | None) -> ClipRange:
        """(ε_low, ε_high) per row, [N] each, on the mask's device."""
        n, device = response_mask.shape[0], response_mask.device
        return ClipRange(torch.full((n,), self.low, device=device), torch.full((n,), self.high, device=device))

    def commit(self, clip: ClipRange, drift: torch.Tensor | None, gather: Gather) -> None:
        pass


class AdaptiveClip:
    """AGPO-adaptive: one symmetric ε per prompt group (``ClipController``) from π_old's group
    entropy H, the probe and KL̄_step, all as of the step start. ``commit`` folds the step's H
    into H_ref and its drift (measured after the update, so ``needs_drift``) into KL̄_step."""

    needs_probe = True
    needs_drift = True

    def __init__(self, controller: ClipController, step_kl: StepKLTracker, group_size: int) -> None:
        self.controller, self.step_kl, self.group_size = controller, step_kl, group_size

    def epsilons(self, entropy: torch.Tensor | None, response_mask: torch.Tensor,
                 probe: ProbeStats | None) -> ClipRange:
        """ε per row [N] (the group's ε repeated over its G rows), as low and high: the clip is
        symmetric. entropy: π_old's token entropy [N, T]."""
        assert entropy is not None and probe is not None, "the adaptive clip needs H and the probe"
        h = group_token_mean(entropy, response_mask, self.group_size).cpu()  # [B]
        eps = self.controller.epsilons(h, probe, self.step_kl.value)  # [B]
        eps = expand_groups(eps, self.group_size).to(response_mask.device)  # [N]
        return ClipRange(eps, eps, h)

    def commit(self, clip: ClipRange, drift: torch.Tensor | None, gather: Gather) -> None:
        """clip: this step's ``epsilons``; drift: the step's drift averaged over processes
        (``step_drift``)."""
        assert drift is not None and clip.group_entropy is not None
        self.step_kl.observe(drift)
        self.controller.update(gather(clip.group_entropy))
        self.step_kl.update()


# ---------------------------------------------------------------------------------------------
# the run's control: both strategies and their controllers, checkpointed together


@dataclass
class Control:
    """The temperature and clip strategies of --algo.adaptive-temperature / --algo.adaptive-clip
    and the controllers they keep (all three always exist: the checkpoint format is fixed)."""

    temperature: FixedTemperature | AdaptiveTemperature  # τ per prompt (the sampler asks it)
    clip: FixedClip | AdaptiveClip  # ε per row (the loop asks it)
    controllers: dict[str, TemperatureController | ClipController | StepKLTracker]

    @classmethod
    def build(cls, cfg: RunConfig) -> Control:
        a = cfg.algo.adaptive
        temperature_ctrl, clip_ctrl, step_kl = TemperatureController(a), ClipController(a), StepKLTracker(a)
        temperature = (AdaptiveTemperature(temperature_ctrl) if cfg.algo.adaptive_temperature
                       else FixedTemperature(cfg.rollout.temperature, temperature_ctrl))
        clip = (AdaptiveClip(clip_ctrl, step_kl, cfg.train.group_size) if cfg.algo.adaptive_clip
                else FixedClip(cfg.algo.clip_low, cfg.algo.clip_high))
        return cls(temperature, clip, {"temperature": temperature_ctrl, "clip": clip_ctrl, "step_kl": step_kl})

    @property
    def needs_probe(self) -> bool:
        """A strategy reads the probe group's statistics."""
        return self.temperature.needs_probe or self.clip.needs_probe

    def commit(self, probe: ProbeStats | None, clip: ClipRange, drift: torch.Tensor | None,
               gather: Gather) -> None:
        """Fold the step into the state, once per RL step and in global prompt order: the probe's
        uncertainties into ū, π_old's group entropies into H_ref, the drift into KL̄_step."""
        self.temperature.commit(probe, gather)
        self.clip.commit(clip, drift, gather)

    def metrics(self) -> dict[str, float]:
        """ctrl/ values after this step's commit (the same on every process)."""
        c = self.controllers
        out = {"ctrl/step_kl": c["step_kl"].value}
        if c["temperature"].value is not None:
            out["ctrl/u_baseline"] = c["temperature"].value
        if c["clip"].value is not None:
            out["ctrl/h_ref"] = c["clip"].value
        return out

    def state_dict(self) -> dict[str, Any]:
        return {k: c.state_dict() for k, c in self.controllers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, c in self.controllers.items():
            c.load_state_dict(state[k])
