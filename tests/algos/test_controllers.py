"""AGPO-adaptive's formulas (docs/methods.md §6): worked numbers of τ and ε, the drift of a step,
probe statistics. Their running state and its timing: tests/train/test_control.py."""

from __future__ import annotations

import math

import pytest
import torch

from agpo.algos import ConfigError
from agpo.algos.controllers import (
    AdaptiveConfig,
    ProbeStats,
    adaptive_epsilons,
    adaptive_temperatures,
    centered_uncertainty,
    ema_fold,
    group_token_mean,
    probe_statistics,
    skewness,
    step_drift,
    vote_entropy,
)


def stats(sigma=0.0, kappa=0.0, entropy=0.0, b=1) -> ProbeStats:
    full = lambda v: torch.full((b,), float(v))  # noqa: E731
    return ProbeStats(full(sigma), full(kappa), full(entropy), full(0.0))


# --- temperature ---------------------------------------------------------------------------------


def test_temperature_worked_numbers():
    # docs/methods.md §6: U = 2, ū = 1, α = 0.25, λ_T = 0.2, τ_base = 1 → c = (2−1)/1 = 1,
    # τ = 1·(1 + 0.2) = 1.2, ū' = 0.25·2 + 0.75·1 = 1.25
    cfg = AdaptiveConfig(tau_base=1.0, lambda_t=0.2, alpha=0.25)
    u = torch.tensor([2.0])
    assert centered_uncertainty(u, 1.0).item() == pytest.approx(1.0)
    assert adaptive_temperatures(u, 1.0, cfg).item() == pytest.approx(1.2)
    assert ema_fold(1.0, [2.0], cfg.alpha) == pytest.approx(1.25)


def test_temperature_without_a_baseline_is_tau_base_and_the_first_value_sets_it():
    cfg = AdaptiveConfig(tau_base=1.0, lambda_t=0.2, alpha=0.25)
    u = torch.tensor([2.0, 3.0])
    assert adaptive_temperatures(u, None, cfg).tolist() == [1.0, 1.0]  # c = 0
    # folded in prompt order: ū = 2 (first value), then 0.25·3 + 0.75·2 = 2.25
    baseline = ema_fold(None, [2.0, 3.0], cfg.alpha)
    assert baseline == pytest.approx(2.25)
    # c = (2 − 2.25)/2.25 = −1/9 → τ = 1 − 0.2/9; c = (3 − 2.25)/2.25 = 1/3 → τ = 1 + 0.2/3
    assert adaptive_temperatures(u, baseline, cfg).tolist() == pytest.approx([1 - 0.2 / 9, 1 + 0.2 / 3])


def test_temperature_is_clipped():
    cfg = AdaptiveConfig(tau_base=1.0, lambda_t=0.15, tau_min=0.5, tau_max=1.5)
    # c = (10 − 0.1)/0.1 = 99 → 1 + 14.85, clipped to 1.5; c = −1 → 0.85
    assert adaptive_temperatures(torch.tensor([10.0, 0.0]), 0.1, cfg).tolist() == pytest.approx([1.5, 0.85])


def test_zero_baseline_counts_as_unset():
    # a baseline of 0 has no scale (c would be U/1e−8): τ = τ_base and the next U initialises it
    assert adaptive_temperatures(torch.tensor([0.7]), 0.0, AdaptiveConfig()).item() == 1.0
    assert ema_fold(0.0, [0.7], 0.1) == pytest.approx(0.7)


# --- clip ----------------------------------------------------------------------------------------


def test_clip_worked_numbers():
    # docs/methods.md §6: ε_base 0.2, H/H_ref = 1.5, E = 0.7, σ̂ = 0.4, KL̄ = 0.2, |κ| = 0.3, ζ = 0.2:
    # ε = 0.2·1.5·(1 + 0.1·0.7) / (1 + 1.0·0.4 + 0.5·0.2 + 0.2·0.3) = 0.2·1.5·1.07 / 1.56 = 0.20577
    eps = adaptive_epsilons(torch.tensor([3.0]), stats(sigma=0.4, kappa=-0.3, entropy=0.7), 2.0, 0.2,
                            AdaptiveConfig(zeta=0.2))
    assert eps.item() == pytest.approx(0.2 * 1.5 * 1.07 / 1.56)
    assert eps.item() == pytest.approx(0.20577, abs=1e-5)


def test_clip_first_step_uses_first_entropy_and_clamps():
    cfg = AdaptiveConfig()
    # H_ref unset → the step's first H (1.0): h = 1, 4 → clipped to 1.5, 0.1 → clipped to 0.5
    eps = adaptive_epsilons(torch.tensor([1.0, 4.0, 0.1]), stats(b=3), None, 0.0, cfg)
    assert eps.tolist() == pytest.approx([0.2, 0.3, 0.1])
    # commit: H_ref = 1, then 0.01·4 + 0.99·1 = 1.03, then 0.01·0.1 + 0.99·1.03 = 1.0207
    assert ema_fold(None, [1.0, 4.0, 0.1], cfg.h_ref_alpha) == pytest.approx(1.0207)


def test_clip_respects_bounds():
    cfg = AdaptiveConfig()
    # huge dispersion: 0.2/(1 + 100) → ε_min 0.05; huge vote entropy: 0.2·(1 + 100·0.1) → ε_max 0.4
    assert adaptive_epsilons(torch.tensor([1.0]), stats(sigma=100.0), 1.0, 0.0, cfg).item() == pytest.approx(0.05)
    assert adaptive_epsilons(torch.tensor([1.0]), stats(entropy=100.0), 1.0, 0.0, cfg).item() == pytest.approx(0.4)


def test_the_formulas_read_their_knobs_from_the_config():
    cfg = AdaptiveConfig(tau_base=0.9, eps_base=0.25)
    # unset state: τ = τ_base, and with h = 1, no probe signal, KL̄ = 0: ε = ε_base
    assert adaptive_temperatures(torch.tensor([1.0]), None, cfg).item() == pytest.approx(0.9)
    assert adaptive_epsilons(torch.tensor([1.0]), stats(), None, 0.0, cfg).item() == pytest.approx(0.25)


# --- step drift ----------------------------------------------------------------------------------


def test_step_drift_hand():
    # G = 2, B = 2, T = 2. Prompt 0 tokens: old − new = 0.2, 0.4, 0.6 (masked 4th) → mean 0.4;
    # prompt 1: −0.1 each → max(0, −0.1) = 0. Mean over prompts: 0.2
    old = torch.tensor([[0.2, 0.4], [0.6, 9.0], [-0.1, -0.1], [-0.1, -0.1]])
    new = torch.zeros(4, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    assert step_drift(old, new, mask, group_size=2).item() == pytest.approx(0.2)


def test_group_token_mean_runs_over_all_tokens_of_a_group():
    # G = 2, T = 2: prompt 0 tokens 1, 2, 3 (4th masked) → 2; prompt 1 has no tokens → 0
    x = torch.tensor([[1.0, 2.0], [3.0, 9.0], [5.0, 5.0], [5.0, 5.0]])
    mask = torch.tensor([[1, 1], [1, 0], [0, 0], [0, 0]])
    assert group_token_mean(x, mask, 2).tolist() == [2.0, 0.0]


# --- probe statistics ----------------------------------------------------------------------------


def test_skewness_hand():
    # [1,0,0,0]: s = 0.5 (Bessel), z = 1.5, −0.5 ×3; mean z³ = (3.375 − 3·0.125)/4 = 0.75;
    # κ = sqrt(4·3)/(4−2) · 0.75 = 1.7321·0.75 = 1.2990
    assert skewness(torch.tensor([[1.0, 0, 0, 0]])).item() == pytest.approx(
        math.sqrt(12) / 2 * 0.75
    )


def test_skewness_zero_when_flat_and_clamped():
    assert skewness(torch.tensor([[1.0, 1, 1, 1], [0.5, 0.5, 0.5, 0.5]])).tolist() == [0.0, 0.0]
    # one success in 200: z ≈ 14.07, mean z³ ≈ 13.9 → beyond the ±10 clamp
    rare = torch.zeros(1, 200)
    rare[0, 0] = 1.0
    assert skewness(rare).item() == 10.0
    assert skewness(-rare).item() == -10.0
    assert skewness(torch.tensor([[1.0, 0.0]])).item() == 0.0  # G < 3: undefined → 0


def test_vote_entropy_and_none():
    # ["4","4","5",None]: p = 1/2, 1/4, 1/4 → E = 0.5·ln2 + 2·0.25·ln4 = 1.0397
    e = vote_entropy([["4", "4", "5", None]])
    assert e.item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(4))
    # two Nones: distinct → votes {4:2, None:1, None:1} (1.0397); shared → {4:2, none:2} (ln 2)
    two = [["4", "4", None, None]]
    assert vote_entropy(two, "distinct").item() == pytest.approx(1.5 * math.log(2))
    assert vote_entropy(two, "shared").item() == pytest.approx(math.log(2))
    assert vote_entropy([[None] * 4]).item() == pytest.approx(math.log(4))  # nothing agrees
    assert vote_entropy([["7"] * 4, []]).tolist() == [0.0, 0.0]


def test_probe_statistics_uncertainty():
    # [1,0,0,0]: σ̂ = 0.5, κ = 1.299, answers ["4","4","5","6"] → E = 0.5 ln2 + 2·0.25 ln4 = 1.0397
    cfg = AdaptiveConfig(w_r=1.0, w_e=2.0, w_k=0.5)
    p = probe_statistics(torch.tensor([[1.0, 0, 0, 0]]), [["4", "4", "5", "6"]], cfg)
    e = 0.5 * math.log(2) + 0.5 * math.log(4)
    assert p.dispersion.item() == pytest.approx(0.5)
    assert p.uncertainty.item() == pytest.approx(0.5 + 2 * e + 0.5 * math.sqrt(12) / 2 * 0.75)
    no_answers = probe_statistics(torch.tensor([[1.0, 0, 0, 0]]), None, cfg)
    assert no_answers.vote_entropy.item() == 0.0


def test_adaptive_config_rejects_bad_ranges():
    with pytest.raises(ConfigError, match="--algo.adaptive.tau-base"):
        AdaptiveConfig(tau_min=1.2)
    with pytest.raises(ConfigError, match="--algo.adaptive.alpha"):
        AdaptiveConfig(alpha=0.0)
