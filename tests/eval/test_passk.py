"""pass@k against exact rational arithmetic, its properties, report_ks, avg@n, maj@k."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.eval.passk import (
    avg_at_n,
    coverage,
    majority_at_k,
    pass_at_k,
    pass_at_k_curve,
    report_ks,
    unique_correct,
)

PROPS = settings(deadline=None, derandomize=True, max_examples=80)


def exact(n: int, c: int, k: int) -> Fraction:
    """1 − C(n−c, k)/C(n, k) as a fraction (math.comb is 0 when n − c < k)."""
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def test_hand_worked():
    # n = 4, c = 1, k = 2: 1 − C(3,2)/C(4,2) = 1 − 3/6 = 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # n = 10, c = 3, k = 1: 3/10
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # n = 5, c = 3, k = 3: n − c = 2 < 3 → 1
    assert pass_at_k(5, 3, 3) == 1.0
    assert pass_at_k(8, 0, 8) == 0.0


@pytest.mark.parametrize("n", [1, 2, 7, 64, 256, 1024])
def test_matches_exact_fractions(n):
    cs = sorted({0, 1, 2, n // 7, n // 2, n - 1, n} & set(range(n + 1)))
    for c in cs:
        for k in report_ks(n):
            want = exact(n, c, k)
            got = pass_at_k(n, c, k)
            # absolute and relative agreement (small pass@k keep their precision too)
            assert abs(got - float(want)) <= 1e-12 + 1e-11 * float(want), (n, c, k)


def test_exact_for_thousands_of_samples():
    for n, c, k in [(4096, 1, 1), (4096, 3, 1000), (5000, 17, 4096), (3000, 2999, 2)]:
        assert pass_at_k(n, c, k) == pytest.approx(float(exact(n, c, k)), rel=1e-11, abs=1e-14)


@PROPS
@given(st.integers(1, 2048).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_properties(nc):
    n, c = nc
    assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)
    ks = report_ks(n)
    values = [pass_at_k(n, c, k) for k in ks]
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:]))  # monotone in k
    assert all(0.0 <= v <= 1.0 for v in values)
    for k in ks:
        if n - c < k:
            assert pass_at_k(n, c, k) == 1.0


def test_bad_arguments():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="at least k samples"):
        pass_at_k(4, 1, 8)


@pytest.mark.parametrize(
    "n, ks",
    [
        (1, [1]),
        (2, [1, 2]),
        (3, [1, 2, 3]),
        (8, [1, 2, 4, 8]),
        (12, [1, 2, 4, 8, 12]),
        (256, [1, 2, 4, 8, 16, 32, 64, 128, 256]),
    ],
)
def test_report_ks(n, ks):
    assert report_ks(n) == ks


def test_curve_avg_coverage():
    # problem A: 4 samples, 1 correct; B: 4 samples, 0 correct
    # pass@1 = (1/4 + 0)/2 = 0.125; pass@2 = (0.5 + 0)/2 = 0.25; pass@4 = (1 + 0)/2 = 0.5
    assert pass_at_k_curve([4, 4], [1, 0], [1, 2, 4]) == pytest.approx({1: 0.125, 2: 0.25, 4: 0.5})
    assert avg_at_n([4, 8], [1, 6]) == pytest.approx((0.25 + 0.75) / 2)
    assert coverage([1, 0, 3, 0]) == 0.5


def test_majority_at_k():
    answers = ["5", "7", "7", None, "5", "5"]
    correct = [True, False, False, False, True, True]
    assert majority_at_k(answers, correct, 3) == 0.0  # first 3: 7 wins 2–1
    assert majority_at_k(answers, correct, 6) == 1.0  # 5 wins 3–2
    assert majority_at_k(answers, correct, 2) == 0.5  # 5 vs 7 tie: half the tie-break is right
    assert majority_at_k([None, None], [False, False], 2) == 0.0  # no answer never wins
    assert unique_correct(["1", "1.0", "1", None], [True, True, True, False]) == 2
