"""Per-token objectives: PPO-clip worked by hand (both clip sides, per-row ε), pg, stats."""

from __future__ import annotations

import math

import pytest
import torch

from agpo.algos.objectives import OBJECTIVES

# One sequence of 3 tokens with ratios ρ = 0.5, 1, 1.5 (old log-probs 0).
LOGP = torch.tensor([[math.log(0.5), 0.0, math.log(1.5)]])
OLD = torch.zeros(1, 3)
MASK = torch.ones(1, 3)
EPS = torch.tensor([0.2])


def ppo(logp, adv, mask=MASK, low=EPS, high=EPS, old=OLD):
    return OBJECTIVES.get("ppo_clip")(logp, old, torch.tensor(adv), mask, low, high)


def test_ppo_clip_positive_advantage():
    # A = 1: min(ρ, clip(ρ, 0.8, 1.2)) = 0.5, 1, 1.2 → loss −0.5, −1, −1.2
    loss, stats = ppo(LOGP, [1.0])
    assert loss[0].tolist() == pytest.approx([-0.5, -1.0, -1.2])
    assert stats["clipfrac_high"].item() == pytest.approx(1 / 3)  # ρ = 1.5 > 1.2 with A > 0
    assert stats["clipfrac_low"].item() == 0.0  # ρ = 0.5 < 0.8 but A > 0: the unclipped branch wins


def test_ppo_clip_negative_advantage():
    # A = −1: min(−ρ, −clip(ρ)) = min(−0.5, −0.8) = −0.8; −1; min(−1.5, −1.2) = −1.5
    # → loss 0.8, 1, 1.5
    loss, stats = ppo(LOGP, [-1.0])
    assert loss[0].tolist() == pytest.approx([0.8, 1.0, 1.5])
    assert stats["clipfrac_low"].item() == pytest.approx(1 / 3)
    assert stats["clipfrac_high"].item() == 0.0


def test_clip_higher_separate_bounds():
    # ε_low 0.2, ε_high 0.28: ρ = 1.5 is clipped at 1.28 → loss −1.28
    loss, _ = ppo(LOGP, [1.0], high=torch.tensor([0.28]))
    assert loss[0, 2].item() == pytest.approx(-1.28)


def test_per_row_epsilon():
    # two rows, same ratios, ε = 0.1 and 0.4: ρ = 1.5 clipped at 1.1 and 1.4
    logp, old, mask = LOGP.repeat(2, 1), OLD.repeat(2, 1), MASK.repeat(2, 1)
    eps = torch.tensor([0.1, 0.4])
    loss, _ = ppo(logp, [1.0, 1.0], mask=mask, low=eps, high=eps, old=old)
    assert loss[:, 2].tolist() == pytest.approx([-1.1, -1.4])


def test_clipped_tokens_get_no_gradient():
    logp = LOGP.clone().requires_grad_(True)
    loss, _ = ppo(logp, [1.0])
    loss.sum().backward()
    # d(−ρA)/d log ρ = −ρA: −0.5, −1 on unclipped tokens; 0 where the clip is active
    assert logp.grad[0].tolist() == pytest.approx([-0.5, -1.0, 0.0])


def test_stats_approx_kl_and_ratio_max():
    # k3 per token: (ρ − 1) − log ρ = (−0.5 + 0.6931), 0, (0.5 − 0.4055) → mean 0.09588
    _, stats = ppo(LOGP, [1.0])
    want = ((-0.5 - math.log(0.5)) + (0.5 - math.log(1.5))) / 3
    assert stats["approx_kl"].item() == pytest.approx(want)
    assert stats["ratio_max"].item() == pytest.approx(1.5)
    assert all(not v.requires_grad and v.ndim == 0 for v in stats.values())


def test_mask_excludes_padding_even_if_it_is_inf():
    logp = torch.tensor([[0.1, -math.inf]])
    old = torch.tensor([[0.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0]])
    for name, fn in OBJECTIVES.items():
        loss, stats = fn(logp, old, torch.tensor([1.0]), mask, EPS, EPS)
        assert loss[0, 1] == 0 and torch.isfinite(loss).all(), name
        assert all(torch.isfinite(v) for v in stats.values()), name


def test_empty_mask_gives_zeros_not_nan():
    for name, fn in OBJECTIVES.items():
        loss, stats = fn(LOGP, OLD, torch.tensor([1.0]), torch.zeros(1, 3), EPS, EPS)
        assert loss.abs().sum() == 0, name
        assert all(torch.isfinite(v) for v in stats.values()), name


def test_pg_matches_ppo_gradient_on_policy():
    # at ρ = 1 (first epoch) ∇(−ρA) = −A ∇log π = ∇(−A log π)
    torch.manual_seed(0)
    base = torch.randn(3, 5)
    adv = torch.randn(3)
    mask = (torch.rand(3, 5) > 0.3).float()
    grads = []
    for name in ("ppo_clip", "pg"):
        logp = base.clone().requires_grad_(True)
        loss, _ = OBJECTIVES.get(name)(logp, base, adv, mask, EPS.expand(3), EPS.expand(3))
        loss.sum().backward()
        grads.append(logp.grad)
    assert torch.allclose(grads[0], grads[1])


def test_pg_hand():
    # −A·log π: A = 2, log π = −1 → 2
    loss, stats = OBJECTIVES.get("pg")(
        torch.tensor([[-1.0]]),
        torch.tensor([[-1.0]]),
        torch.tensor([2.0]),
        torch.ones(1, 1),
        EPS,
        EPS,
    )
    assert loss.item() == 2.0 and stats["clipfrac_high"] == 0
