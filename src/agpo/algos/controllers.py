"""AGPO-adaptive's feedback formulas (docs/methods.md §6, arXiv 2605.20722): probe statistics,
the bidirectional temperature, the adaptive clip ε, the policy drift of a step and the EMAs that
fold them into running state — pure functions of tensors and the state's floats.

The state itself (ū, H_ref, KL̄_step), when it is committed, and the strategies the sampler and
the loop ask for τ and ε live on the training side (agpo.train.control): within one RL step every
prompt group's τ and ε are computed from the state *as it was at the start of the step*, in
prompt order, and the state is committed once per RL step, after the update.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from agpo.algos.advantages import Dispersion, dispersion
from agpo.configs import require
from agpo.ops import masked_mean
from agpo.rollout.config import require_temperature

# A baseline at or below this carries no scale (c = (U − ū)/ū would explode): it counts as
# unset and the next value initialises it, as the reference code does.
_UNSET = 1e-8
SKEW_MIN_STD = 1e-6
SKEW_CLAMP = 10.0


@dataclass(frozen=True)
class AdaptiveConfig:
    """AGPO-adaptive's probe and controllers (``--algo.adaptive.*``); defaults from
    docs/methods.md §6."""

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
        for name in ("tau_min", "tau_base", "tau_max"):  # each a temperature logits can be divided by
            require_temperature(getattr(self, name), p + name)
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

    κ = sqrt(G(G−1))/(G−2) · mean(((r − r̄)/s)³) with s the Bessel std, as docs/methods.md §6 and
    the reference code write it; 0 when s < 1e−6 or G < 3, clamped to ±10.
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


def ema(state: float, value: float, alpha: float) -> float:
    """One EMA step at rate ``alpha``: α·value + (1−α)·state."""
    return alpha * value + (1 - alpha) * state


def ema_fold(state: float | None, values: Sequence[float], alpha: float) -> float | None:
    """Fold per-prompt values into an EMA in prompt order; an unset state (None or ≤ 1e−8: a
    baseline without scale) takes the next value, as the reference code does."""
    for v in values:
        state = v if state is None or state <= _UNSET else ema(state, v, alpha)
    return state


def _is_set(state: float | None) -> bool:
    return state is not None and state > _UNSET


# ---------------------------------------------------------------------------------------------
# temperature and clip


def centered_uncertainty(uncertainty: torch.Tensor, baseline: float | None) -> torch.Tensor:
    """c = (U − ū)/(ū + 1e−8) per prompt, [B] → [B]; 0 while the baseline ū is unset."""
    u = torch.as_tensor(uncertainty, dtype=torch.float32)
    if not _is_set(baseline):
        return torch.zeros_like(u)
    return (u - baseline) / (baseline + 1e-8)


def adaptive_temperatures(uncertainty: torch.Tensor, baseline: float | None,
                          cfg: AdaptiveConfig) -> torch.Tensor:
    """Bidirectional temperature τ = clip(τ_base·(1 + λ_T·c), τ_min, τ_max) per prompt: the
    probe uncertainty U [B] against its running baseline ū → τ [B] (expand with
    ``expand_groups`` for the G rows)."""
    c = centered_uncertainty(uncertainty, baseline)
    return (cfg.tau_base * (1 + cfg.lambda_t * c)).clamp(cfg.tau_min, cfg.tau_max)


def adaptive_epsilons(entropy: torch.Tensor, probe: ProbeStats, h_ref: float | None,
                      step_kl: float | torch.Tensor, cfg: AdaptiveConfig) -> torch.Tensor:
    """Adaptive clip ε per prompt group (symmetric clip [1 − ε, 1 + ε]):

        h = clip(H / H_ref, h_min, h_max)
        ε = clip(ε_base·h·(1 + δ_E·E) / (1 + α_var·σ̂ + γ·KL̄_step + ζ·|κ|), ε_min, ε_max)

    entropy H [B]: the mean token entropy of π_old on each group's training responses; probe
    stats of [B] (E, σ̂, κ); H_ref the running reference entropy (while unset, the step's first
    group's H stands in for it: "first value = first H"); KL̄_step a scalar → ε [B].
    """
    h_now = torch.as_tensor(entropy, dtype=torch.float32).clamp_min(_UNSET)
    h = (h_now / (h_ref if _is_set(h_ref) else h_now[0])).clamp(cfg.h_min, cfg.h_max)
    num = cfg.eps_base * h * (1 + cfg.delta_e * probe.vote_entropy)
    den = (
        1
        + cfg.alpha_var * probe.dispersion
        + cfg.gamma * torch.as_tensor(step_kl, dtype=torch.float32)
        + cfg.zeta * probe.skewness.abs()
    )
    return (num / den).clamp(cfg.eps_min, cfg.eps_max)


# ---------------------------------------------------------------------------------------------
# policy drift (KL̄_step's input)


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
