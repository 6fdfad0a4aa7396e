"""agpo inside verl: the pure adapters here, verl itself in its own environment.

verl pins transformers<5.11, so its checks (verl_env/verl_checks.py) run in .venv-verl, built by
scripts/verl_env.sh (about 80 s on first use, then reused) and driven from here by subprocess
(tests/separate_env.py) so ``make test`` covers them. If the environment cannot be built (no package index), the verl
test is skipped with a loud warning that quotes the build log.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agpo.algos.advantages import ADVANTAGES, AdvantageConfig
from agpo.integrations.verl import (
    VERL_NAMES,
    advantage_config,
    group_rows,
    outcome_advantages,
)
from tests.separate_env import run_in_separate_env

ROOT = Path(__file__).resolve().parents[2]


def test_verl_names_keep_agpo_names_except_where_verl_owns_them():
    assert VERL_NAMES["agpo_asym"] == "agpo_asym"
    assert VERL_NAMES["grpo"] == "agpo_grpo"  # verl's own "grpo" stays verl's
    assert VERL_NAMES["rloo"] == "agpo_rloo"
    assert VERL_NAMES["grpo_passk"] == "agpo_grpo_passk"  # verl ships its own grpo_passk
    assert VERL_NAMES["passk_analytic"] == "passk_analytic"
    assert len(set(VERL_NAMES.values())) == len(ADVANTAGES)


def test_group_rows_finds_groups_by_id_in_any_order():
    # Rows of 3 prompts shuffled; prompt "c" lost one response (filtered), so it has 1 row less.
    index = ["b", "a", "c", "a", "b", "c", "a", "b"]
    buckets = group_rows(index)
    assert [b.tolist() for b in buckets] == [[[2, 5]], [[0, 4, 7], [1, 3, 6]]]


def test_outcome_advantages_match_agpo_on_shuffled_rows():
    # G = 2 per prompt: "p" has scores (1, 0), "q" (0, 0); rows interleaved p, q, q, p.
    # agpo_asym (δ = 0.1): group p has μ = 0.5, σ = 0.5, z = ±0.5 / sqrt(0.25 + 0.01)
    # = ±0.9806; correct → 0.9806, incorrect → −0.9806 − 1 = −1.9806; group q: z = 0, so both
    # get R = −1.
    rewards = torch.zeros(4, 3)
    rewards[0, 2] = 1.0  # the score sits on row 0's last token (prompt p, correct)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.float32)
    index = ["p", "q", "q", "p"]
    adv, returns = outcome_advantages("agpo_asym", rewards, mask, index, AdvantageConfig())
    z = 0.5 / (0.25 + 0.01) ** 0.5
    expected_rows = torch.tensor([z, -1.0, -1.0, -z - 1.0])
    torch.testing.assert_close(adv, expected_rows[:, None] * mask)
    assert returns is adv


def test_outcome_advantages_need_the_group_index():
    with pytest.raises(ValueError, match="uid"):
        outcome_advantages("grpo", torch.zeros(2, 1), torch.ones(2, 1), None, AdvantageConfig())


def test_advantage_config_from_verl_section():
    assert advantage_config(None) == AdvantageConfig()
    assert advantage_config({"adv_estimator": "agpo_asym"}) == AdvantageConfig()
    assert advantage_config({"agpo": {"beta_pos": 0.5}}).beta_pos == 0.5
    with pytest.raises(ValueError, match="unknown key.*nope.*valid keys"):
        advantage_config({"agpo": {"nope": 1}})


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_agpo_inside_verl_in_its_own_environment():
    run_in_separate_env("verl", ROOT / "tests" / "integrations" / "verl_env" / "verl_checks.py",
                        untested="VERL INTEGRATION", build_timeout_s=900, run_timeout_s=600,
                        OMP_NUM_THREADS="1", RAY_DISABLE_IMPORT_WARNING="1")
