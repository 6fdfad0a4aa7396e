"""KL estimators k1/k2/k3 on sampled tokens."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.algos.kl import KL_ESTIMATORS


def test_hand_worked():
    # Δ = log π_θ − log π_ref = ln 2: k1 = 0.6931, k2 = 0.6931²/2 = 0.2402,
    # k3 = e^{−Δ} + Δ − 1 = 1/2 + 0.6931 − 1 = 0.1931
    lp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    d = math.log(2)
    assert KL_ESTIMATORS.get("k1")(lp, ref).item() == pytest.approx(d)
    assert KL_ESTIMATORS.get("k2")(lp, ref).item() == pytest.approx(d * d / 2)
    assert KL_ESTIMATORS.get("k3")(lp, ref).item() == pytest.approx(0.5 + d - 1)


@settings(deadline=None, derandomize=True, max_examples=50)
@given(st.lists(st.floats(-200, 200, allow_nan=False), min_size=1, max_size=8))
def test_k2_k3_non_negative_and_finite(deltas):
    d = torch.tensor([deltas])
    for name in ("k2", "k3"):
        out = KL_ESTIMATORS.get(name)(d, torch.zeros_like(d))
        assert torch.isfinite(out).all() and (out >= 0).all(), name


def test_zero_at_equal_policies():
    x = torch.randn(3, 4)
    for name, fn in KL_ESTIMATORS.items():
        assert fn(x, x).abs().max() == 0, name


def test_k3_is_unbiased_for_kl():
    # E_{x~π}[k3] = KL(π‖π_ref) for categorical π, π_ref; check exactly by summing over outcomes.
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.3, 0.3, 0.4])
    exact = (p * (p / q).log()).sum()
    expected_k3 = (p * KL_ESTIMATORS.get("k3")(p.log(), q.log())).sum()
    expected_k1 = (p * KL_ESTIMATORS.get("k1")(p.log(), q.log())).sum()
    assert expected_k3.item() == pytest.approx(exact.item(), rel=1e-5)
    assert expected_k1.item() == pytest.approx(exact.item(), rel=1e-5)
