"""AGPO-adaptive controllers: METHODS §2 worked numbers, the timing rule, probe statistics."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agpo.algos.controllers import (
    AdaptiveConfig,
    ClipController,
    ProbeStats,
    StepKLTracker,
    AdaptiveClip,
    AdaptiveTemperature,
    FixedClip,
    FixedTemperature,
    TemperatureController,
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
    # METHODS §2: U = 2, ū = 1, α = 0.25, λ_T = 0.2, τ_base = 1 → c = (2−1)/1 = 1,
    # τ = 1·(1 + 0.2) = 1.2,
    # ū' = 0.25·2 + 0.75·1 = 1.25
    ctrl = TemperatureController(AdaptiveConfig(tau_base=1.0, lambda_t=0.2, alpha=0.25))
    ctrl.load_state_dict({"baseline": 1.0})
    u = torch.tensor([2.0])
    assert ctrl.centered(u).item() == pytest.approx(1.0)
    assert ctrl.temperatures(u).item() == pytest.approx(1.2)
    ctrl.update(u)
    assert ctrl.value == pytest.approx(1.25)


def test_temperature_first_step_and_timing():
    ctrl = TemperatureController(AdaptiveConfig(tau_base=1.0, lambda_t=0.2, alpha=0.25))
    u = torch.tensor([2.0, 3.0])
    # no baseline yet: c = 0 → τ = τ_base for every group of the first step
    assert ctrl.temperatures(u).tolist() == [1.0, 1.0]
    # commit in prompt order: ū = 2 (first value), then 0.25·3 + 0.75·2 = 2.25
    ctrl.update(u)
    assert ctrl.value == pytest.approx(2.25)
    # next step: both groups use ū = 2.25 from the start of the step
    # c = (2 − 2.25)/2.25 = −1/9 → τ = 1 − 0.2/9 = 0.97778; c = (3 − 2.25)/2.25 = 1/3 → τ = 1.06667
    assert ctrl.temperatures(u).tolist() == pytest.approx([1 - 0.2 / 9, 1 + 0.2 / 3])


def test_temperature_is_clipped():
    ctrl = TemperatureController(AdaptiveConfig(tau_base=1.0, lambda_t=0.15, tau_min=0.5, tau_max=1.5))
    ctrl.load_state_dict({"baseline": 0.1})
    # c = (10 − 0.1)/0.1 = 99 → 1 + 14.85, clipped to 1.5; c = −1 → 0.85
    assert ctrl.temperatures(torch.tensor([10.0, 0.0])).tolist() == pytest.approx([1.5, 0.85])


def test_zero_baseline_counts_as_unset():
    # a baseline of 0 has no scale (c would be U/1e−8): the next U initialises it instead
    ctrl = TemperatureController()
    ctrl.update([0.0])
    assert ctrl.temperatures(torch.tensor([0.7])).item() == 1.0
    ctrl.update([0.7])
    assert ctrl.value == pytest.approx(0.7)


# --- clip ----------------------------------------------------------------------------------------


def test_clip_worked_numbers():
    # METHODS §2: ε_base 0.2, H/H_ref = 1.5, E = 0.7, σ̂ = 0.4, KL̄ = 0.2, |κ| = 0.3, ζ = 0.2:
    # ε = 0.2·1.5·(1 + 0.1·0.7) / (1 + 1.0·0.4 + 0.5·0.2 + 0.2·0.3) = 0.2·1.5·1.07 / 1.56 = 0.20577
    ctrl = ClipController(AdaptiveConfig(zeta=0.2))
    ctrl.load_state_dict({"h_ref": 2.0})
    eps = ctrl.epsilons(torch.tensor([3.0]), stats(sigma=0.4, kappa=-0.3, entropy=0.7), 0.2)
    assert eps.item() == pytest.approx(0.2 * 1.5 * 1.07 / 1.56)
    assert eps.item() == pytest.approx(0.20577, abs=1e-5)


def test_clip_first_step_uses_first_entropy_and_clamps():
    ctrl = ClipController()
    # H_ref unset → the step's first H (1.0): h = 1, 4 → clipped to 1.5, 0.1 → clipped to 0.5
    eps = ctrl.epsilons(torch.tensor([1.0, 4.0, 0.1]), stats(b=3), 0.0)
    assert eps.tolist() == pytest.approx([0.2, 0.3, 0.1])
    # commit: H_ref = 1, then 0.01·4 + 0.99·1 = 1.03, then 0.01·0.1 + 0.99·1.03 = 1.0207
    ctrl.update(torch.tensor([1.0, 4.0, 0.1]))
    assert ctrl.value == pytest.approx(1.0207)


def test_clip_respects_bounds():
    ctrl = ClipController()
    ctrl.load_state_dict({"h_ref": 1.0})
    # huge dispersion: 0.2/(1 + 100) → ε_min 0.05; huge vote entropy: 0.2·(1 + 100·0.1) → ε_max 0.4
    assert ctrl.epsilons(torch.tensor([1.0]), stats(sigma=100.0), 0.0).item() == pytest.approx(0.05)
    assert ctrl.epsilons(torch.tensor([1.0]), stats(entropy=100.0), 0.0).item() == pytest.approx(
        0.4
    )


# --- step KL -------------------------------------------------------------------------------------


def test_step_drift_hand():
    # G = 2, B = 2, T = 2. Prompt 0 tokens: old − new = 0.2, 0.4, 0.6 (masked 4th) → mean 0.4;
    # prompt 1: −0.1 each → max(0, −0.1) = 0. Mean over prompts: 0.2
    old = torch.tensor([[0.2, 0.4], [0.6, 9.0], [-0.1, -0.1], [-0.1, -0.1]])
    new = torch.zeros(4, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    assert step_drift(old, new, mask, group_size=2).item() == pytest.approx(0.2)


def test_step_kl_tracker_commits_once_per_step():
    kl = StepKLTracker(AdaptiveConfig(kl_alpha=0.1))
    kl.observe(torch.tensor(0.2))
    kl.observe(torch.tensor(0.4))
    assert kl.value == 0.0  # nothing committed mid-step
    kl.update()  # 0.1·mean(0.2, 0.4) + 0.9·0 = 0.03
    assert kl.value == pytest.approx(0.03)
    kl.update()  # a step with no observation leaves it alone
    assert kl.value == pytest.approx(0.03)


def test_state_dicts_are_json_and_round_trip():
    t, c, k = TemperatureController(), ClipController(), StepKLTracker()
    t.update([0.5, 0.7])
    c.update([1.2])
    k.observe(torch.tensor(0.3))
    k.update()
    for ctrl, fresh in ((t, TemperatureController()), (c, ClipController()), (k, StepKLTracker())):
        fresh.load_state_dict(json.loads(json.dumps(ctrl.state_dict())))
        assert fresh.value == ctrl.value


def test_controllers_read_their_knobs_from_the_config():
    cfg = AdaptiveConfig(tau_base=0.9, eps_base=0.25, kl_alpha=0.5)
    # unset state: τ = τ_base, and with h = 1, no probe signal, KL̄ = 0: ε = ε_base
    assert TemperatureController(cfg).temperatures(torch.tensor([1.0])).item() == pytest.approx(0.9)
    assert ClipController(cfg).epsilons(torch.tensor([1.0]), stats(), 0.0).item() == pytest.approx(0.25)
    assert StepKLTracker(cfg).alpha == 0.5


# --- strategies (what the sampler and the loop ask) ---------------------------------------------


def _gather(per_group: torch.Tensor) -> list[float]:
    return per_group.flatten().tolist()  # one process: its own values, in prompt order


def test_group_token_mean_runs_over_all_tokens_of_a_group():
    # G = 2, T = 2: prompt 0 tokens 1, 2, 3 (4th masked) → 2; prompt 1 has no tokens → 0
    x = torch.tensor([[1.0, 2.0], [3.0, 9.0], [5.0, 5.0], [5.0, 5.0]])
    mask = torch.tensor([[1, 1], [1, 0], [0, 0], [0, 0]])
    assert group_token_mean(x, mask, 2).tolist() == [2.0, 0.0]


def test_fixed_strategies_ignore_the_probe_but_track_its_baseline():
    ctrl = TemperatureController()
    fixed = FixedTemperature(0.7, ctrl)
    assert not fixed.needs_probe and fixed.temperatures(None, 3).tolist() == pytest.approx([0.7] * 3)
    fixed.commit(None, _gather)  # no probe: nothing to fold
    assert ctrl.value is None
    probe = ProbeStats(*(torch.zeros(2),) * 3, torch.tensor([0.5, 0.7]))
    fixed.commit(probe, _gather)  # a probe sampled for the adaptive clip still moves ū
    assert ctrl.value == pytest.approx(0.1 * 0.7 + 0.9 * 0.5)
    clip = FixedClip(0.2, 0.28)
    low, high = clip.epsilons(None, torch.ones(4, 3), None)
    assert low.tolist() == pytest.approx([0.2] * 4) and high.tolist() == pytest.approx([0.28] * 4)
    assert not (clip.needs_probe or clip.needs_drift)


def test_adaptive_strategies_read_the_state_of_the_step_start_and_commit_once():
    cfg = AdaptiveConfig(lambda_t=0.2, alpha=0.25)
    temperature = AdaptiveTemperature(TemperatureController(cfg))
    temperature.controller.load_state_dict({"baseline": 1.0})
    probe = ProbeStats(*(torch.zeros(1),) * 3, torch.tensor([2.0]))
    assert temperature.temperatures(probe, 1).item() == pytest.approx(1.2)  # worked numbers above
    temperature.commit(probe, _gather)
    assert temperature.controller.value == pytest.approx(1.25)
    # clip: G = 2, both groups' π_old entropy 1 (H_ref unset → h = 1): ε = ε_base on all 4 rows
    clip = AdaptiveClip(ClipController(cfg), StepKLTracker(cfg), group_size=2)
    low, high = clip.epsilons(torch.ones(4, 3), torch.ones(4, 3), stats(b=2))
    assert low.tolist() == pytest.approx([0.2] * 4) and torch.equal(low, high)
    clip.commit(torch.tensor([0.5]), _gather)  # H_ref ← 1; KL̄ ← 0.1·0.5
    assert clip.controller.value == pytest.approx(1.0) and clip.step_kl.value == pytest.approx(0.05)


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
    with pytest.raises(ValueError, match="--algo.adaptive.tau-base"):
        AdaptiveConfig(tau_min=1.2)
    with pytest.raises(ValueError, match="--algo.adaptive.alpha"):
        AdaptiveConfig(alpha=0.0)
