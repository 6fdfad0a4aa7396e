"""Advantage estimators: hand-worked groups (arithmetic in comments), the equivalences that
docs/methods.md states, and properties over random binary groups."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.algos.advantages import ADVANTAGES, AdvantageConfig, AdvantageProps, properties
from agpo.configs import ConfigError
from agpo.eval.passk import pass_at_k

CFG = AdvantageConfig()
PROPS = settings(deadline=None, derandomize=True, max_examples=60)

# The registered properties; the tests at the end check each one against the estimators' outputs.
BINARY_ONLY = set(ADVANTAGES.where(binary_only=True))
ZERO_SUM = set(ADVANTAGES.where(zero_sum=True))
EQUAL_GROUPS_ZERO = set(ADVANTAGES.where(equal_groups_zero=True))


def cfg_for(g: int, **knobs: object) -> AdvantageConfig:
    """CFG for groups of g: passk_analytic needs k < G, so k = min(4, G − 1) (1 at G = 1)."""
    return AdvantageConfig(passk_k=max(1, min(CFG.passk_k, g - 1)), **knobs)


def adv(name: str, scores: list[list[float]], cfg: AdvantageConfig | None = None) -> torch.Tensor:
    cfg = cfg_for(len(scores[0])) if cfg is None else cfg
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


# --- agpo_asym: docs/methods.md §1 check group --------------------------------------------------

CHECK = [[1, 1, 1, 0, 0, 0, 0, 0]]  # G = 8, 3 correct: μ = 3/8, σ = sqrt(15/64) = 0.484


def test_agpo_asym_check_group_methods_numbers():
    # docs/methods.md's numbers are the δ = 0 case:
    # A⁺ = 0.625/0.484 = 1.291, A⁻ = −0.375/0.484 − 1 = −1.775
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


# --- equivalences (docs/methods.md §1) and properties ------------------------------------------


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


@pytest.mark.parametrize("name", ADVANTAGES.names())
@PROPS
@given(binary_groups())
def test_finite_and_all_equal_groups(name, scores):
    a = adv(name, scores)
    assert torch.isfinite(a).all()
    for row, a_row in zip(scores, a):
        if len(set(row)) == 1 and name in EQUAL_GROUPS_ZERO:
            assert a_row.abs().max() == 0


@PROPS
@given(
    st.lists(
        st.lists(st.floats(0, 1, allow_nan=False), min_size=4, max_size=4), min_size=1, max_size=3
    )
)
def test_non_binary_scores(scores):
    for name in ADVANTAGES.names():
        if properties(name).binary_only:
            if any(v not in (0.0, 1.0) for row in scores for v in row):
                with pytest.raises(ValueError, match="binary"):
                    adv(name, scores)
        else:
            assert torch.isfinite(adv(name, scores)).all()


# --- passk_analytic (Chen et al., arXiv 2508.10751): G = 8, k = 4 --------------------------------
# C(8, 4) = 70, C(7, 3) = 35. With c correct and N_neg = 8 − c:
#   R̄ = 1 − C(N_neg, 4)/70, σ = sqrt(R̄(1 − R̄)), q = C(N_neg − 1, 3)/35,
#   A_pos = (1 − R̄)/σ, A_neg = (1 − R̄ − q)/σ   (eps = 0 below)

NO_EPS = AdvantageConfig(eps=0.0)  # passk_k = 4


@pytest.mark.parametrize(
    "c, a_pos, a_neg",
    [
        # c = 1: C(7,4) = 35 → 1 − R̄ = 1/2, σ = 1/2; q = C(6,3)/35 = 20/35 = 4/7
        #        A_pos = 0.5/0.5 = 1, A_neg = (1/2 − 4/7)/(1/2) = −1/7
        (1, 1.0, -1 / 7),
        # c = 2: C(6,4) = 15 → 1 − R̄ = 3/14, σ = sqrt(11/14 · 3/14) = √33/14; q = 10/35 = 2/7
        #        A_pos = (3/14)/(√33/14) = 3/√33 = 0.5222, A_neg = (3/14 − 4/14)·14/√33 = −1/√33
        (2, 3 / math.sqrt(33), -1 / math.sqrt(33)),
        # c = 3: C(5,4) = 5 → 1 − R̄ = 1/14, σ = √13/14; q = C(4,3)/35 = 4/35
        #        A_pos = 1/√13 = 0.2774, A_neg = (5/70 − 8/70)·14/√13 = −0.6/√13 = −0.1664
        (3, 1 / math.sqrt(13), -0.6 / math.sqrt(13)),
        # c = 4: C(4,4) = 1 → 1 − R̄ = 1/70, σ = √69/70; q = C(3,3)/35 = 1/35
        #        A_pos = 1/√69 = 0.1204, A_neg = (1/70 − 2/70)·70/√69 = −1/√69
        (4, 1 / math.sqrt(69), -1 / math.sqrt(69)),
    ],
)
def test_passk_analytic_hand_g8_k4(c, a_pos, a_neg):
    a = adv("passk_analytic", [[1] * c + [0] * (8 - c)], NO_EPS)[0]
    assert a[:c].tolist() == pytest.approx([a_pos] * c, rel=1e-12)
    assert a[c:].tolist() == pytest.approx([a_neg] * (8 - c), rel=1e-12)
    # zero-sum: c·A_pos + (8 − c)·A_neg = 0 (c = 1: 1 − 7/7; c = 3: 3/√13 − 5·0.6/√13)
    assert a.sum().item() == pytest.approx(0.0, abs=1e-12)


def test_passk_analytic_solved_at_k_and_all_equal_groups_get_zero():
    # c ≥ 5 leaves N_neg ≤ 3 < k = 4 incorrect: every 4-subset holds a correct response, R̄ = 1,
    # σ = 0 → 0 for every response, incorrect ones included (GRPO would still push them down).
    # c = 0: R̄ = 0 → 0; c = 8: R̄ = 1 → 0.
    rows = [[1] * c + [0] * (8 - c) for c in (0, 5, 6, 7, 8)]
    assert adv("passk_analytic", rows).abs().max().item() == 0
    assert adv("passk_analytic", rows, NO_EPS).abs().max().item() == 0  # no 0/0 with eps = 0
    assert adv("grpo", rows[1:2])[0, 7] < 0


def test_passk_analytic_default_eps():
    # eps = 1e−6 in σ + eps as the reference code: c = 1 → A_pos = 0.5/(0.5 + 1e−6)
    a = adv("passk_analytic", [[1] + [0] * 7])
    assert a[0, 0].item() == pytest.approx(0.5 / (0.5 + 1e-6), rel=1e-12)


def test_passk_analytic_rejects_k_not_below_g():
    # k = G = 4: every 4-subset is the whole group, R̄ ∈ {0, 1}, no signal: refused
    with pytest.raises(ValueError, match=r"1 ≤ k < G.*passk-k"):
        adv("passk_analytic", [[1, 0, 0, 0]], AdvantageConfig(passk_k=4))
    with pytest.raises(ConfigError, match="--algo.adv.passk-k"):
        AdvantageConfig(passk_k=0)


@PROPS
@given(binary_groups(max_g=16), st.integers(1, 15))
def test_passk_analytic_mean_is_the_evaluation_pass_at_k(scores, k):
    # A_pos = (1 − R̄)/σ with σ = sqrt(R̄(1 − R̄)) → R̄ = 1/(1 + A_pos²) wherever A_pos is defined
    g = len(scores[0])
    if k >= g:
        return
    a = adv("passk_analytic", scores, AdvantageConfig(eps=0.0, passk_k=k))
    for row, a_row in zip(scores, a):
        c = int(sum(row))
        rho = pass_at_k(g, c, k)
        if 0 < rho < 1:
            a_pos = a_row[row.index(1.0)].item()
            assert 1 / (1 + a_pos**2) == pytest.approx(rho, rel=1e-9)
            assert (a_row[torch.tensor(row) == 0] < 0).all()  # A_neg < 0 < A_pos
        else:
            assert a_row.abs().max() == 0


@PROPS
@given(binary_groups())
def test_passk_analytic_k1_is_grpo_population_std(scores):
    # k = 1: R̄ = c/G = p, q = C(N_neg − 1, 0)/C(G − 1, 0) = 1 → A_pos = (1 − p)/σ, A_neg = −p/σ
    a = adv("passk_analytic", scores, AdvantageConfig(passk_k=1))
    b = adv("grpo", scores, AdvantageConfig(std="population"))  # same eps 1e−6
    assert torch.allclose(a, b, rtol=0, atol=1e-9)


# --- grpo_passk (Tang et al., arXiv 2503.19595; verl's grpo_passk) ------------------------------


def test_grpo_passk_one_correct_of_eight():
    # A_best = (1 − 0)/(s + eps); Bessel s² = Σ(r − μ)²/7 = (7/8)/7 = 1/8 → s = 0.35355
    # → A = 1/0.35355 = 2√2 = 2.8284; every other response (all incorrect) gets 0
    a = adv("grpo_passk", [[0, 0, 0, 1, 0, 0, 0, 0]], AdvantageConfig(eps=0.0))[0]
    assert a.tolist() == pytest.approx([0, 0, 0, 2 * math.sqrt(2), 0, 0, 0, 0], rel=1e-12)
    raw = adv("grpo_passk", [[0, 0, 0, 1, 0, 0, 0, 0]], AdvantageConfig(passk_std_norm=False))[0]
    assert raw.tolist() == [0, 0, 0, 1, 0, 0, 0, 0]  # r_max − r_second_max = 1 − 0


def test_grpo_passk_two_or_more_correct_or_all_equal_teach_nothing():
    # c ≥ 2: the best two are 1 and 1, gap 0, whichever response is "best"; c = 0: 0 − 0
    rows = [[1, 1, 0, 0, 0, 0, 0, 0], [1] * 7 + [0], [1] * 8, [0] * 8]
    assert adv("grpo_passk", rows).abs().max().item() == 0
    assert adv("grpo_passk", rows, AdvantageConfig(eps=0.0)).abs().max().item() == 0


def test_grpo_passk_continuous_scores():
    # [0.2, 0.9, 0.5, 0.7]: best 0.9, second 0.7 → gap 0.2 on row 1 only.
    # μ = 0.575; squared deviations 0.140625 + 0.105625 + 0.005625 + 0.015625 = 0.2675;
    # s = sqrt(0.2675/3) = 0.29861 → A = 0.2/0.29861 = 0.66978
    a = adv("grpo_passk", [[0.2, 0.9, 0.5, 0.7]], AdvantageConfig(eps=0.0))[0]
    assert a.tolist() == pytest.approx([0, 0.2 / math.sqrt(0.2675 / 3), 0, 0], rel=1e-12)
    # a tie for the best: max of the others is the best score for both → all 0
    assert adv("grpo_passk", [[0.2, 0.9, 0.5, 0.9]]).abs().max().item() == 0


@PROPS
@given(
    st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=12),
    st.randoms(use_true_random=False),
)
def test_grpo_passk_is_the_leave_one_out_max(row, rnd):
    # A_i = max(all) − max(all but i), unnormalised; and a permutation of the rows permutes it
    cfg = AdvantageConfig(passk_std_norm=False)
    a = adv("grpo_passk", [row], cfg)[0].tolist()
    loo = [max(row) - max(row[:i] + row[i + 1 :]) for i in range(len(row))]
    assert a == pytest.approx(loo, abs=1e-12)
    perm = list(range(len(row)))
    rnd.shuffle(perm)
    b = adv("grpo_passk", [[row[i] for i in perm]], cfg)[0].tolist()
    assert b == [a[i] for i in perm]


def test_grpo_passk_needs_two():
    with pytest.raises(ValueError, match="G ≥ 2"):
        adv("grpo_passk", [[1.0]], CFG)


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


# --- the registered properties, each checked both ways ------------------------------------------
# A property that holds is checked on random groups (above and below); one that does not hold
# must have a witness among these groups (G = 8), so a wrong flag in either direction fails.

WITNESSES = [[1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0], [0] * 8, [1] * 8]


def test_every_estimator_is_registered_with_its_properties():
    for name in ADVANTAGES.names():
        assert isinstance(properties(name), AdvantageProps), name
    with pytest.raises(KeyError, match="valid names: .*grpo"):
        properties("nope")


@pytest.mark.parametrize("name", sorted(ADVANTAGES.names()))
def test_properties_that_do_not_hold_have_a_witness(name):
    props = properties(name)
    out = ADVANTAGES.get(name)(torch.tensor(WITNESSES, dtype=torch.float64), CFG)
    a = out.advantages  # [4, 8]
    if not props.zero_sum:
        assert a.sum(1).abs().max() > 1e-6
    if not props.equal_groups_zero:
        assert a[2:].abs().max() > 0  # an all-wrong or all-correct group still teaches
    if props.group_baseline:
        # the same score gets different advantages in groups with different others
        assert (a[0, 0] != a[1, 0]) or (a[0, 7] != a[1, 7])
    if props.drops_responses:
        assert not out.keep.all()
    if not props.binary_only:
        half = ADVANTAGES.get(name)(torch.tensor([[0.5] + WITNESSES[0][1:]]), CFG).advantages
        assert torch.isfinite(half).all()


@pytest.mark.parametrize("name", ADVANTAGES.names())
@PROPS
@given(binary_groups())
def test_properties_that_hold_on_random_groups(name, scores):
    props = properties(name)
    out = ADVANTAGES.get(name)(torch.tensor(scores, dtype=torch.float64), cfg_for(len(scores[0])))
    if not props.group_baseline:
        # an advantage is a function of the response's own score: one value per score
        by_score: dict[float, set[float]] = {}
        for r, a in zip(torch.tensor(scores).flatten().tolist(), out.advantages.flatten().tolist()):
            by_score.setdefault(r, set()).add(a)
        assert all(len(v) == 1 for v in by_score.values()), by_score
    if not props.drops_responses:
        assert out.keep.all()
