"""The base model is a model organism: partial competence, and pass@k that keeps rising with k."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from agpo.tasks import testbed as tasks
from agpo.eval.passk import pass_at_k
from agpo.apps.testbed.check import quick_eval


def test_pass_at_k_hand_worked() -> None:
    # n = 4, c = 1: pass@1 = 1/4; pass@2 = 1 − C(3,2)/C(4,2) = 1 − 3/6 = 0.5; n − c < k → 1.
    # pass@1 is c/n exactly; larger k is a log-space product, exact to ~1e−16 relative.
    assert pass_at_k(4, 1, 1) == 0.25  # c/n exactly
    assert abs(pass_at_k(4, 1, 2) - 0.5) < 1e-12
    assert pass_at_k(4, 1, 4) == 1.0 and pass_at_k(4, 0, 4) == 0.0


def test_base_model_competence_and_rising_pass_at_k(testbed_base: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(testbed_base).eval()
    tok = AutoTokenizer.from_pretrained(testbed_base)
    items = tasks.load_testbed_add("test", limit=60)
    q = quick_eval(model, tok, items, n=32, seed=0)
    # Strategy A with 20% noise on two digits is right on 0.8² = 64% of samples of a non-S
    # problem; the 20% S problems need the rare strategy B: pass@1 ≈ 0.8·0.64 ≈ 0.5.
    assert q.passk(1) > 0.3
    # The boundary: many more problems are solved at k = 32 than at k = 1, and the S problems
    # are solved mainly at large k (B is ≈ 3% of samples).
    assert q.passk(32) > q.passk(1) + 0.25
    assert q.passk(32, "S") > q.passk(1, "S") + 0.2
    assert q.passk(1, "S") < 0.1
    assert 0.005 < q.share_b < 0.1
    torch.testing.assert_close(torch.tensor(q.passk(1)), torch.tensor(sum(q.correct) / (32 * 60)))
