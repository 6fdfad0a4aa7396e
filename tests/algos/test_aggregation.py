"""Aggregation modes: hand-worked values and micro-batch invariance of loss and gradients."""

from __future__ import annotations

import pytest
import torch

from agpo.algos.aggregation import AGGREGATIONS, LossNorm
from agpo.algos.objectives import OBJECTIVES

PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # 4 tokens, 2 sequences, T = 3


@pytest.mark.parametrize(
    "name, want",
    [
        ("token_mean", 10 / 4),  # (1+2+3+4)/4 tokens
        ("seq_mean_token_mean", (2 + 4) / 2),  # row means 6/3 and 4/1, over 2 sequences
        ("seq_mean_token_sum", (6 + 4) / 2),  # row sums over 2 sequences
        ("constant", 10 / (2 * 3)),  # Σ / (sequences · L_max = 3)
    ],
)
def test_hand_worked(name, want):
    norm = LossNorm.from_mask(MASK)
    assert AGGREGATIONS.get(name)(PER_TOKEN, MASK, norm).item() == pytest.approx(want)


def test_loss_norm_from_mask_counts_dropped_rows_out():
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # row 2 dropped (PSR/NSR keep=False)
    norm = LossNorm.from_mask(mask, max_len=8)
    assert (norm.tokens.item(), norm.sequences.item(), norm.max_len) == (2, 1, 8)


@pytest.mark.parametrize("name", AGGREGATIONS.names())
def test_empty_mask_is_zero_not_nan(name):
    mask = torch.zeros(2, 3)
    out = AGGREGATIONS.get(name)(PER_TOKEN, mask, LossNorm.from_mask(mask))
    assert out.item() == 0.0


@pytest.mark.parametrize("name", AGGREGATIONS.names())
@pytest.mark.parametrize("splits", [[1, 1, 1, 1, 1, 1], [2, 4], [3, 1, 2]])
def test_micro_batches_sum_to_the_whole(name, splits):
    # A fixed rollout batch (N = 6, T = 5, ragged mask): the whole batch's loss/gradient must equal
    # the sum over micro-batches when every micro-batch divides by the whole batch's LossNorm.
    g = torch.Generator().manual_seed(7)
    n, t = 6, 5
    theta0 = torch.randn(n, t, generator=g) * 0.1  # stands in for the policy's log-probs
    old = theta0 + 0.05 * torch.randn(n, t, generator=g)
    adv = torch.randn(n, generator=g)
    lengths = torch.tensor([5, 1, 3, 0, 4, 2])
    mask = (torch.arange(t) < lengths[:, None]).float()
    eps = torch.full((n,), 0.2)
    norm = LossNorm.from_mask(mask, max_len=t)
    agg, obj = AGGREGATIONS.get(name), OBJECTIVES.get("ppo_clip")

    whole_theta = theta0.clone().requires_grad_(True)
    whole = agg(obj(whole_theta, old, adv, mask, eps, eps)[0], mask, norm)
    whole.backward()

    parts_theta = theta0.clone().requires_grad_(True)
    total = torch.zeros(())
    for rows in torch.arange(n).split(splits):
        part = agg(
            obj(parts_theta[rows], old[rows], adv[rows], mask[rows], eps[rows], eps[rows])[0],
            mask[rows],
            norm,
        )
        part.backward()
        total = total + part.detach()
    assert total.item() == pytest.approx(whole.item(), abs=1e-7)
    assert torch.allclose(parts_theta.grad, whole_theta.grad, atol=1e-7)
