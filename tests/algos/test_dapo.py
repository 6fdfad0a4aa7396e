"""DAPO helpers: dynamic-sampling filter and overlong shaping."""

from __future__ import annotations

import pytest
import torch

from agpo.algos.dapo import informative_groups, overlong_penalty


def test_informative_groups():
    scores = torch.tensor([[1.0, 0, 1], [1, 1, 1], [0, 0, 0], [0.5, 0.5, 0.7]])
    assert informative_groups(scores).tolist() == [True, False, False, True]


def test_overlong_penalty_hand():
    # L_max 20, L_cache 4: free up to 16; 18 → −(18−16)/4 = −0.5; 20 → −1
    lengths = torch.tensor([10, 16, 18, 20])
    assert overlong_penalty(lengths, 20, 4).tolist() == pytest.approx([0, 0, -0.5, -1])
    assert overlong_penalty(lengths, 20, 0).tolist() == [0, 0, 0, 0]  # off
    with pytest.raises(ValueError):
        overlong_penalty(lengths, 20, 30)
