"""Advantage estimators: hand-worked groups (arithmetic in comments), the equivalences METHODS
states, and properties over random binary groups."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.algos.advantages import ADVANTAGES, AdvantageConfig

CFG = AdvantageConfig()
PROPS = settings(deadline=None, derandomize=True, max_examples=60)

# Estimators defined only on binary scores; the others generalise to any real scores.
BINARY_ONLY = {"reinforce", "psr", "nsr", "w_reinforce", "asym_grpo"}
# Group-relative estimators whose advantages sum to 0 in every group.
ZERO_SUM = {"grpo", "dr_grpo", "rloo", "agpo_adaptive"}


def adv(name: str, scores: list[list[float]], cfg: AdvantageConfig = CFG) -> torch.Tensor:
    return ADVANTAGES.get(name)(torch.tensor(scores, dtype=torch.float64), cfg).advantages


def binary_groups(max_b: int = 4, max_g: int = 16):
    return st.integers(1, max_b).flatmap(
        lambda b: st.integers(2, max_g).flatmap(
            lambda g: st.lists(
                st.lists(st.sampled_from([0.0, 1.0]), min_size=g, max_size=g),
                min_size=b,
                max_size=b,
            )
        )
    )


def mixed(scores: list[list[float]]) -> list[list[float]]:
    """Only the groups with 0 < p < 1."""
    return [row for row in scores if 0 < sum(row) < len(row)]


# --- hand-worked cases: G = 4, one correct: μ = 0.25 -------------------------------------------


def test_grpo_population_std():
    # σ_pop = sqrt(0.25·0.75) = 0.4330: A = 0.75/0.4330 = 1.7321, −0.25/0.4330 = −0.5774
    a = adv("grpo", [[1, 0, 0, 0]], AdvantageConfig(eps=0.0))
    assert a[0].tolist() == pytest.approx(
        [math.sqrt(3), -1 / math.sqrt(3)] + [-1 / math.sqrt(3)] * 2
    )


def test_grpo_bessel_std():
    # s² = (0.75² + 3·0.25²)/3 = 0.75/3 = 0.25 → s = 0.5: A = 1.5, −0.5
    a = adv("grpo", [[1, 0, 0, 0]], AdvantageConfig(std="bessel", eps=0.0))
    assert a[0].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5])


def test_grpo_eps_in_denominator():
    # (1 − 0.25)/(0.4330 + 0.1) = 1.4070
    a = adv("grpo", [[1, 0, 0, 0]], AdvantageConfig(eps=0.1))
    assert a[0, 0].item() == pytest.approx(0.75 / (math.sqrt(0.1875) + 0.1))


def test_dr_grpo_is_mean_centred():
    assert adv("dr_grpo", [[1, 0, 0, 0]])[0].tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25])


def test_rloo_hand():
    # correct: 1 − mean(0,0,0) = 1; incorrect: 0 − mean(1,0,0) = −1/3
    assert adv("rloo", [[1, 0, 0, 0]])[0].tolist() == pytest.approx([1, -1 / 3, -1 / 3, -1 / 3])


def test_rloo_needs_two():
    with pytest.raises(ValueError, match="G ≥ 2"):
        adv("rloo", [[1.0]])


def test_reinforce_family_hand():
    s = [[1, 0, 0, 0]]
    assert adv("reinforce", s)[0].tolist() == [1, -1, -1, -1]
    assert adv("w_reinforce", s)[0].tolist() == pytest.approx([0.1, -1, -1, -1])
    out = ADVANTAGES.get("psr")(torch.tensor(s, dtype=torch.float32), CFG)
    assert out.keep[0].tolist() == [True, False, False, False]
    assert out.advantages[0].tolist() == [1, 0, 0, 0]  # dropped rows carry 0
    out = ADVANTAGES.get("nsr")(torch.tensor(s, dtype=torch.float32), CFG)
    assert out.keep[0].tolist() == [False, True, True, True]
    assert out.advantages[0].tolist() == [0, -1, -1, -1]


def test_asym_grpo_hand():
    # p = 1/4: A⁺ = (0.75/0.25)^0.9 = 3^0.9 = 2.6879; A⁻ = −(0.25/0.75)^0.4 = −(1/3)^0.4 = −0.6444
    a = adv("asym_grpo", [[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    assert a[0].tolist() == pytest.approx([3**0.9] + [-(3**-0.4)] * 3)
    assert a[1:].abs().sum() == 0  # p ∈ {0, 1} → 0


# --- agpo_asym: METHODS §1 check group ----------------------------------------------------------

CHECK = [[1, 1, 1, 0, 0, 0, 0, 0]]  # G = 8, 3 correct: μ = 3/8, σ = sqrt(15/64) = 0.484


def test_agpo_asym_check_group_methods_numbers():
    # METHODS' numbers are the δ = 0 case: A⁺ = 0.625/0.484 = 1.291, A⁻ = −0.375/0.484 − 1 = −1.775
    a = adv("agpo_asym", CHECK, AdvantageConfig(asym_delta=0.0))
    assert a[0, :3].tolist() == pytest.approx([1.291] * 3, abs=5e-4)
    assert a[0, 3:].tolist() == pytest.approx([-1.775] * 5, abs=5e-4)
    # summed magnitudes 3.87 vs 8.87: negative-dominant
    assert a[0, :3].sum().item() == pytest.approx(3.87, abs=5e-3)
    assert a[0, 3:].abs().sum().item() == pytest.approx(8.87, abs=5e-3)


def test_agpo_asym_defaults_are_negative_dominant():
    # δ = 0.1: sqrt(15/64 + 0.01) = 0.4943 → A⁺ = 0.625/0.4943 = 1.264, A⁻ = −0.7586 − 1 = −1.759
    a = adv("agpo_asym", CHECK)
    assert a[0, 0].item() == pytest.approx(0.625 / math.sqrt(15 / 64 + 0.01))
    assert a[0, 3].item() == pytest.approx(-0.375 / math.sqrt(15 / 64 + 0.01) - 1)
    assert a[0, 3:].abs().sum() > a[0, :3].sum()


def test_agpo_asym_all_equal_groups():
    a = adv("agpo_asym", [[0] * 8, [1] * 8])
    assert a[0].tolist() == [-1.0] * 8  # all wrong: R for every response (GRPO gives 0)
    assert a[1].tolist() == [0.0] * 8  # all correct: nothing to learn


def test_agpo_asym_knobs():
    # gate off: incorrect → R only; λ_pos = 0.1 scales the positive channel
    a = adv(
        "agpo_asym",
        CHECK,
        AdvantageConfig(asym_gate=False, asym_lambda_pos=0.1, asym_neg_const=-0.5),
    )
    z = 0.625 / math.sqrt(15 / 64 + 0.01)
    assert a[0, 0].item() == pytest.approx(0.1 * z)
    assert a[0, 3:].tolist() == pytest.approx([-0.5] * 5)


def test_agpo_asym_rare_success_is_large():
    # one correct of 8: z = 0.875/sqrt(7/64 + 0.01) = 2.53 > the 3-correct group's 1.26
    a = adv("agpo_asym", [[1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0]])
    assert a[0, 0] > 2.5 and a[1, 0] < 0.4


def test_agpo_asym_non_binary_threshold():
    # scores 0.5 count as incorrect at threshold 1 and as correct at threshold 0.5
    s = [[1.0, 0.5, 0.0, 0.0]]
    assert adv("agpo_asym", s)[0, 1] < 0
    assert adv("agpo_asym", s, AdvantageConfig(correct_threshold=0.5))[0, 1] > 0


# --- agpo_adaptive ------------------------------------------------------------------------------


def test_agpo_adaptive_std_is_bessel_zscore():
    # [1,0,0,0]: s = 0.5 → 1.5, −0.5
    assert adv("agpo_adaptive", [[1, 0, 0, 0]])[0].tolist() == pytest.approx(
        [1.5, -0.5, -0.5, -0.5]
    )


@pytest.mark.parametrize("kind", ["mad", "iqr"])
def test_agpo_adaptive_robust_on_half_correct(kind):
    # [1]*4+[0]*4: MAD = 0.5·1.4826 = 0.7413; IQR = (1 − 0)/1.349 = 0.7413
    # → A = ±0.5/0.7413 = ±0.6745
    a = adv("agpo_adaptive", [[1, 1, 1, 1, 0, 0, 0, 0]], AdvantageConfig(dispersion=kind))
    assert a[0].tolist() == pytest.approx([0.6745] * 4 + [-0.6745] * 4, abs=1e-4)


@pytest.mark.parametrize("kind", ["mad", "iqr"])
def test_agpo_adaptive_falls_back_to_std(kind):
    # 1 of 8 correct: median 0 and MAD 0; quartiles (positions 1.75, 5.25 of 7 zeros) 0 → IQR 0.
    # Bessel std: s² = (0.875² + 7·0.125²)/7 = 0.875/7 = 0.125 → A⁺ = 0.875/0.3536 = 2.4749
    a = adv("agpo_adaptive", [[1, 0, 0, 0, 0, 0, 0, 0]], AdvantageConfig(dispersion=kind))
    assert a[0, 0].item() == pytest.approx(0.875 / math.sqrt(0.125))


@PROPS
@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=16),
    st.sampled_from(["std", "mad", "iqr"]),
)
def test_agpo_adaptive_is_bounded(row, kind):
    # |r − r̄| ≤ (G−1)/√G · s always; σ̂ ≥ floor·s bounds |A| ≤ (G−1)/(√G·floor)
    cfg = AdvantageConfig(dispersion=kind)
    g = len(row)
    a = adv("agpo_adaptive", [row], cfg)
    assert torch.isfinite(a).all()
    assert a.abs().max().item() <= (g - 1) / math.sqrt(g) / cfg.dispersion_floor + 1e-6


# --- equivalences (METHODS §3) and properties --------------------------------------------------


@PROPS
@given(binary_groups())
def test_asym_grpo_half_is_grpo_population(scores):
    scores = mixed(scores)
    if scores:
        a = adv("asym_grpo", scores, AdvantageConfig(beta_pos=0.5, beta_neg=0.5))
        b = adv("grpo", scores, AdvantageConfig(eps=0.0))
        assert torch.allclose(a, b, atol=1e-9)


@PROPS
@given(binary_groups())
def test_asym_grpo_zero_is_reinforce(scores):
    scores = mixed(scores)
    if scores:
        a = adv("asym_grpo", scores, AdvantageConfig(beta_pos=0.0, beta_neg=0.0))
        assert torch.equal(a, adv("reinforce", scores))


@PROPS
@given(binary_groups())
def test_rloo_is_scaled_mean_centring(scores):
    g = len(scores[0])
    t = torch.tensor(scores, dtype=torch.float64)
    assert torch.allclose(adv("rloo", scores), g / (g - 1) * (t - t.mean(1, keepdim=True)))


@PROPS
@given(binary_groups())
def test_group_relative_estimators_are_zero_sum(scores):
    for name in ZERO_SUM:
        assert adv(name, scores).sum(1).abs().max().item() < 1e-9, name


@PROPS
@given(binary_groups(), st.sampled_from(sorted(ADVANTAGES.names())))
def test_finite_and_all_equal_groups(scores, name):
    a = adv(name, scores)
    assert torch.isfinite(a).all()
    for row, a_row in zip(scores, a):
        if len(set(row)) == 1 and name in ZERO_SUM | {"asym_grpo"}:
            assert a_row.abs().max() == 0


@PROPS
@given(
    st.lists(
        st.lists(st.floats(0, 1, allow_nan=False), min_size=4, max_size=4), min_size=1, max_size=3
    )
)
def test_non_binary_scores(scores):
    for name in ADVANTAGES.names():
        if name in BINARY_ONLY:
            if any(v not in (0.0, 1.0) for row in scores for v in row):
                with pytest.raises(ValueError, match="binary"):
                    adv(name, scores)
        else:
            assert torch.isfinite(adv(name, scores)).all()


def test_stats_are_detached_scalars():
    s = torch.tensor(CHECK, dtype=torch.float32, requires_grad=True)
    for name, fn in ADVANTAGES.items():
        out = fn(s, CFG)
        assert out.advantages.shape == out.keep.shape == s.shape
        for key, v in out.stats.items():
            assert v.ndim == 0 and not v.requires_grad, (name, key)


def test_every_estimator_documents_equal_and_non_binary_groups():
    for name, fn in ADVANTAGES.items():
        doc = (fn.__doc__ or "").lower()
        assert "all-equal" in doc, name
        assert "non-binary" in doc or "binary scores only" in doc, name


def test_bad_shape():
    with pytest.raises(ValueError, match=r"\[B, G\]"):
        ADVANTAGES.get("grpo")(torch.zeros(4), CFG)
