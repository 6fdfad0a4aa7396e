"""AGPO-adaptive's feedback controllers (METHODS.md §2, arXiv 2605.20722): probe statistics, the
bidirectional temperature controller, the adaptive clip controller and the step-KL tracker.

Timing (it fixes the EMA arithmetic): within one RL step every prompt group's τ and ε are
computed from the controller state *as it was at the start of the step*, in prompt order; the
state (ū, H_ref, KL̄_step) is committed once per RL step with ``update``, after the update
epochs. Each controller is a small object with ``value``, ``update``, ``state_dict`` and
``load_state_dict`` (JSON-able floats), checkpointed with the optimizer.

Controller state is a handful of Python floats: committing it converts the step's [B] vectors
to lists once per step (one deliberate host sync per step, never inside the loss).

The trainer does not branch on AGPO-adaptive: it builds once a temperature strategy
(``FixedTemperature`` / ``AdaptiveTemperature``, asked for τ per prompt by the sampler) and a clip
strategy (``FixedClip`` / ``AdaptiveClip``, asked for ε per row by the loop), each committing its
controllers once per step.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from agpo.algos._check import require
from agpo.algos.advantages import Dispersion, dispersion
from agpo.ops import masked_mean

# A baseline at or below this carries no scale (c = (U − ū)/ū would explode): it counts as
# unset and the next value initialises it, as the reference code does.
_UNSET = 1e-8
SKEW_MIN_STD = 1e-6
SKEW_CLAMP = 10.0


@dataclass(frozen=True)
class AdaptiveConfig:
    """AGPO-adaptive's probe and controllers (``--algo.adaptive.*``); defaults from METHODS §2."""

    probe_group_size: int = 0
    """Responses in the probe group sampled at τ_base per prompt (0: the training group size G)."""
    dispersion: Dispersion = "std"
    """Probe dispersion σ̂: Bessel std, MAD·1.4826 or IQR/1.349 (match --algo.adv.dispersion)."""
    none_votes: Literal["distinct", "shared"] = "distinct"
    """Vote entropy: a response with no extracted answer is its own vote (distinct) or all such
    responses share one 'no answer' vote (shared)."""
    w_r: float = 1.0
    """Weight of the probe dispersion σ̂ in the uncertainty U."""
    w_e: float = 1.0
    """Weight of the probe vote entropy E in the uncertainty U."""
    w_k: float = 0.0
    """Weight of the probe |skewness| |κ| in the uncertainty U."""
    tau_base: float = 1.0
    """τ_base: the probe's sampling temperature and the centre of the adaptive τ."""
    lambda_t: float = 0.15
    """λ_T: τ = τ_base·(1 + λ_T·c), c the relative change of U against its running baseline."""
    tau_min: float = 0.5
    """Lower bound of the adaptive temperature."""
    tau_max: float = 1.5
    """Upper bound of the adaptive temperature."""
    alpha: float = 0.1
    """EMA rate of the uncertainty baseline ū."""
    eps_base: float = 0.2
    """ε_base of the adaptive clip (symmetric clip [1−ε, 1+ε])."""
    eps_min: float = 0.05
    """Lower bound of the adaptive ε."""
    eps_max: float = 0.4
    """Upper bound of the adaptive ε."""
    alpha_var: float = 1.0
    """α_var: ε shrinks with the probe dispersion σ̂."""
    gamma: float = 0.5
    """γ: ε shrinks with the step-KL EMA KL̄_step."""
    delta_e: float = 0.1
    """δ_E: ε grows with the probe vote entropy E."""
    zeta: float = 0.0
    """ζ: ε shrinks with the probe |skewness|."""
    h_min: float = 0.5
    """Lower clip of the entropy ratio h = H / H_ref."""
    h_max: float = 1.5
    """Upper clip of the entropy ratio h = H / H_ref."""
    h_ref_alpha: float = 0.01
    """EMA rate of the reference entropy H_ref (its first value is the first H)."""
    kl_alpha: float = 0.1
    """EMA rate of KL̄_step, the policy drift per RL step (a controller signal, never a loss)."""
    logprob_temperature: Literal["sampling", "one"] = "sampling"
    """Temperature of π_old, π_θ, π_ref and the entropy: the group's sampling τ (agpo: the ratio
    compares the distributions that produced the samples) or 1 (the reference code)."""

    def __post_init__(self) -> None:
        p = "algo.adaptive."
        require(self.probe_group_size >= 0, p + "probe_group_size", "must be ≥ 0 (0: same as G)")
        require(self.dispersion in ("std", "mad", "iqr"), p + "dispersion", "use std, mad or iqr")
        require(self.none_votes in ("distinct", "shared"), p + "none_votes", "distinct or shared")
        for w in ("w_r", "w_e", "w_k", "lambda_t", "alpha_var", "gamma", "delta_e", "zeta"):
            require(getattr(self, w) >= 0, p + w, "must be ≥ 0")
        require(
            0 < self.tau_min <= self.tau_base <= self.tau_max,
            p + "tau_base",
            f"need 0 < tau-min ≤ tau-base ≤ tau-max; got {self.tau_min}, {self.tau_base}, "
            f"{self.tau_max}",
        )
        require(
            0 < self.eps_min <= self.eps_base <= self.eps_max < 1,
            p + "eps_base",
            f"need 0 < eps-min ≤ eps-base ≤ eps-max < 1; got {self.eps_min}, {self.eps_base}, "
            f"{self.eps_max}",
        )
        require(0 < self.h_min <= 1 <= self.h_max, p + "h_min", "need 0 < h-min ≤ 1 ≤ h-max")
        for a in ("alpha", "h_ref_alpha", "kl_alpha"):
            require(0 < getattr(self, a) <= 1, p + a, "an EMA rate must be in (0, 1]")
        require(
            self.logprob_temperature in ("sampling", "one"),
            p + "logprob_temperature",
            "use sampling (agpo) or one (reference code)",
        )


# ---------------------------------------------------------------------------------------------
# probe statistics


@dataclass(frozen=True)
class ProbeStats:
    """Statistics of each prompt's probe group, all [B]: dispersion σ̂, skewness κ, vote
    entropy E and the uncertainty U = w_r·σ̂ + w_e·E + w_k·|κ|."""

    dispersion: torch.Tensor
    skewness: torch.Tensor
    vote_entropy: torch.Tensor
    uncertainty: torch.Tensor


def skewness(scores: torch.Tensor) -> torch.Tensor:
    """Adjusted Fisher–Pearson skewness per group, [B, G] → [B].

    κ = sqrt(G(G−1))/(G−2) · mean(((r − r̄)/s)³) with s the Bessel std, as METHODS §2 and the
    reference code write it; 0 when s < 1e−6 or G < 3, clamped to ±10.
    """
    g = scores.shape[-1]
    if g < 3:
        return scores.new_zeros(scores.shape[:-1])
    s = scores.std(dim=-1, keepdim=True, correction=1)  # [B, 1]
    z = (scores - scores.mean(dim=-1, keepdim=True)) / s.clamp_min(SKEW_MIN_STD)
    kappa = math.sqrt(g * (g - 1)) / (g - 2) * (z**3).mean(dim=-1)  # [B]
    kappa = torch.where(s.squeeze(-1) < SKEW_MIN_STD, torch.zeros_like(kappa), kappa)
    return kappa.clamp(-SKEW_CLAMP, SKEW_CLAMP)


def vote_entropy(
    answers: Sequence[Sequence[str | None]], none_votes: Literal["distinct", "shared"] = "distinct"
) -> torch.Tensor:
    """E = −Σ_a p_a log p_a (nats) over each group's extracted answers → [B] (float32).

    Answers are compared as Python strings (the extractor normalises them). ``None`` means no
    answer was extracted: with ``"distinct"`` every None is a vote of its own (failed
    extractions agree with nothing, so a group of G unparseable responses has the maximal
    entropy log G); with ``"shared"`` all Nones form one 'no answer' vote. An empty group has 0.
    """
    out = []
    for group in answers:
        keys: list[object] = [
            (None, i) if a is None and none_votes == "distinct" else a for i, a in enumerate(group)
        ]
        n = len(keys)
        counts = Counter(keys).values()
        out.append(-sum(c / n * math.log(c / n) for c in counts) if n else 0.0)
    return torch.tensor(out, dtype=torch.float32)


def probe_statistics(
    scores: torch.Tensor,
    answers: Sequence[Sequence[str | None]] | None,
    cfg: AdaptiveConfig,
) -> ProbeStats:
    """Probe statistics of B prompts: scores [B, G_probe], answers B lists of G_probe strings
    (or None when the task has no answer extractor: E = 0). Returns ``ProbeStats`` of [B]."""
    scores = scores.float()
    sigma = dispersion(scores, cfg.dispersion)
    kappa = skewness(scores)
    if answers is None:
        entropy = torch.zeros_like(sigma)
    else:
        if len(answers) != scores.shape[0]:
            raise ValueError(f"answers has {len(answers)} groups; scores has {scores.shape[0]}")
        entropy = vote_entropy(answers, cfg.none_votes).to(sigma.device)
    u = cfg.w_r * sigma + cfg.w_e * entropy + cfg.w_k * kappa.abs()
    return ProbeStats(sigma, kappa, entropy, u)


def expand_groups(per_group: torch.Tensor, group_size: int) -> torch.Tensor:
    """A per-prompt value [B] as a per-sequence one [N = B·G] (rows grouped by prompt)."""
    return per_group.repeat_interleave(group_size)


def _floats(x: torch.Tensor | Sequence[float]) -> list[float]:
    return [float(v) for v in (x.detach().flatten().tolist() if isinstance(x, torch.Tensor) else x)]


def _ema_fold(state: float | None, values: Sequence[float], alpha: float) -> float | None:
    """Fold values into an EMA in order; an unset state (None or ≤ 1e−8) takes the next value."""
    for v in values:
        state = v if state is None or state <= _UNSET else alpha * v + (1 - alpha) * state
    return state


# ---------------------------------------------------------------------------------------------
# controllers


class _Baseline:
    """A running baseline of a per-prompt signal: ``value`` (None until the first ``update``),
    folded in prompt order once per RL step by an EMA at rate ``_rate()``; checkpointed as
    ``{key: value}``."""

    key = ""

    def __init__(self, cfg: AdaptiveConfig | None = None) -> None:
        self.cfg = cfg or AdaptiveConfig()
        self.value: float | None = None

    def _rate(self) -> float:
        raise NotImplementedError

    def update(self, values: torch.Tensor | Sequence[float]) -> None:
        """Commit the step's per-prompt values [B] (once per RL step, after the update epochs)."""
        self.value = _ema_fold(self.value, _floats(values), self._rate())

    def state_dict(self) -> dict[str, Any]:
        return {self.key: self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = None if state[self.key] is None else float(state[self.key])


class TemperatureController(_Baseline):
    """Bidirectional temperature τ = clip(τ_base·(1 + λ_T·c), τ_min, τ_max), c = (U − ū)/(ū + 1e−8).

    ``value`` is the running uncertainty baseline ū (None before the first update). While ū is
    unset c = 0 (τ = τ_base); ``update`` folds the step's U in prompt order, the first ever U
    initialising ū, later ones ū ← α·U + (1−α)·ū.
    """

    key = "baseline"

    def _rate(self) -> float:
        return self.cfg.alpha

    def centered(self, uncertainty: torch.Tensor) -> torch.Tensor:
        """c per prompt, [B] → [B], from the baseline at the start of the step."""
        u = torch.as_tensor(uncertainty, dtype=torch.float32)
        if self.value is None or self.value <= _UNSET:
            return torch.zeros_like(u)
        return (u - self.value) / (self.value + 1e-8)

    def temperatures(self, uncertainty: torch.Tensor) -> torch.Tensor:
        """τ per prompt, U [B] → τ [B] (expand with ``expand_groups`` for the G rows)."""
        c, cfg = self.centered(uncertainty), self.cfg
        return (cfg.tau_base * (1 + cfg.lambda_t * c)).clamp(cfg.tau_min, cfg.tau_max)


class ClipController(_Baseline):
    """Adaptive clip ε per prompt group (symmetric clip [1 − ε, 1 + ε]):

        h = clip(H / H_ref, h_min, h_max)
        ε = clip(ε_base·h·(1 + δ_E·E) / (1 + α_var·σ̂ + γ·KL̄_step + ζ·|κ|), ε_min, ε_max)

    H is the mean token entropy of π_old on the group's training responses; E, σ̂, κ come from
    the probe. ``value`` is H_ref, the EMA (rate h_ref_alpha) of H; before the first update the
    step's first group's H stands in for it ("first value = first H"). ``update`` commits the
    step's group entropies H [B] into H_ref, in prompt order.
    """

    key = "h_ref"

    def _rate(self) -> float:
        return self.cfg.h_ref_alpha

    def epsilons(
        self, entropy: torch.Tensor, probe: ProbeStats, step_kl: float | torch.Tensor
    ) -> torch.Tensor:
        """ε per prompt: entropy H [B], probe stats of [B], KL̄_step (scalar) → ε [B]."""
        h_now = torch.as_tensor(entropy, dtype=torch.float32).clamp_min(_UNSET)
        cfg = self.cfg
        h_ref = self.value if self.value is not None and self.value > _UNSET else h_now[0]
        h = (h_now / h_ref).clamp(cfg.h_min, cfg.h_max)
        num = cfg.eps_base * h * (1 + cfg.delta_e * probe.vote_entropy)
        den = (
            1
            + cfg.alpha_var * probe.dispersion
            + cfg.gamma * torch.as_tensor(step_kl, dtype=torch.float32)
            + cfg.zeta * probe.skewness.abs()
        )
        return (num / den).clamp(cfg.eps_min, cfg.eps_max)


def group_token_mean(x: torch.Tensor, response_mask: torch.Tensor, group_size: int) -> torch.Tensor:
    """Mean of ``x`` [N, T] over all response tokens of each prompt's G rows → [B] (0 for a
    group without tokens); rows grouped by prompt. The grouping of π_old's entropy H and of the
    step drift."""
    n, t = x.shape
    b = n // group_size
    return masked_mean(x.reshape(b, group_size * t), response_mask.reshape(b, group_size * t), dim=-1)


def step_drift(
    old_logprobs: torch.Tensor, logprobs: torch.Tensor, response_mask: torch.Tensor, group_size: int
) -> torch.Tensor:
    """Policy drift of one RL step: mean over prompts of max(0, mean_t(log π_old − log π_new)).

    old_logprobs, logprobs, response_mask: [N, T], rows grouped by prompt (G = group_size);
    the token mean runs over all tokens of the prompt's G responses. Returns a 0-d tensor.
    """
    per_prompt = group_token_mean(old_logprobs - logprobs, response_mask, group_size)  # [B]
    return per_prompt.clamp_min(0).mean() if per_prompt.numel() else per_prompt.new_zeros(())


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
            mean = float(self._sum) / self._count
            self.value = self.alpha * mean + (1 - self.alpha) * self.value
        self._sum, self._count = None, 0

    def state_dict(self) -> dict[str, Any]:
        return {"kl_step": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["kl_step"])


# ---------------------------------------------------------------------------------------------
# strategies: what the sampler asks for τ and the loop for ε, chosen once per run


Gather = Callable[[torch.Tensor], list[float]]
"""A per-prompt value [b] of every process as one list, in global prompt order."""


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


class FixedClip:
    """ε_low / ε_high for every row (--algo.clip-low / --algo.clip-high; DAPO's clip-higher
    when they differ); nothing to commit."""

    needs_probe = False
    needs_drift = False

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def epsilons(self, entropy: torch.Tensor | None, response_mask: torch.Tensor,
                 probe: ProbeStats | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ε_low, ε_high) per row, [N] each, on the mask's device."""
        n, device = response_mask.shape[0], response_mask.device
        return torch.full((n,), self.low, device=device), torch.full((n,), self.high, device=device)

    def commit(self, drift: torch.Tensor | None, gather: Gather) -> None:
        pass


class AdaptiveClip:
    """AGPO-adaptive: one symmetric ε per prompt group (``ClipController``) from π_old's group
    entropy H, the probe and KL̄_step, all as of the step start. ``commit`` folds the step's H
    into H_ref and its drift (measured after the update, so ``needs_drift``) into KL̄_step."""

    needs_probe = True
    needs_drift = True

    def __init__(self, controller: ClipController, step_kl: StepKLTracker, group_size: int) -> None:
        self.controller, self.step_kl, self.group_size = controller, step_kl, group_size
        self._entropy: torch.Tensor | None = None  # [B] this step's H, for commit

    def epsilons(self, entropy: torch.Tensor | None, response_mask: torch.Tensor,
                 probe: ProbeStats | None) -> tuple[torch.Tensor, torch.Tensor]:
        """ε per row [N] (the group's ε repeated over its G rows), twice: the clip is symmetric.
        entropy: π_old's token entropy [N, T]."""
        assert entropy is not None and probe is not None, "the adaptive clip needs H and the probe"
        self._entropy = group_token_mean(entropy, response_mask, self.group_size).cpu()  # [B]
        eps = self.controller.epsilons(self._entropy, probe, self.step_kl.value)  # [B]
        eps = expand_groups(eps, self.group_size).to(response_mask.device)  # [N]
        return eps, eps

    def commit(self, drift: torch.Tensor | None, gather: Gather) -> None:
        """drift: the step's drift averaged over processes (``step_drift``)."""
        assert drift is not None and self._entropy is not None
        self.step_kl.observe(drift)
        self.controller.update(gather(self._entropy))
        self.step_kl.update()
