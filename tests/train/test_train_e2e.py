"""End to end through the CLI: every advantage estimator raises a simple verifiable reward."""

from __future__ import annotations

from pathlib import Path

import pytest

from agpo.algos.advantages import ADVANTAGES
from agpo.train.cli import main
from agpo.train.metrics import PROGRESS_KEYS

CONFIGS = Path(__file__).parents[2] / "configs"
EXTRA = {
    # agpo_adaptive as its paper runs it: probe group, adaptive temperature and clip.
    "agpo_adaptive": ["--algo.adaptive-clip", "--algo.adaptive-temperature"],
}


@pytest.mark.parametrize("advantage", ADVANTAGES.names())
def test_reward_rises_for_every_advantage_estimator(advantage, base_flags, read_metrics, tmp_path):
    out = tmp_path / "run"
    argv = ["--out", str(out), *base_flags, "--algo.advantage", advantage, "--train.steps", "12",
            *EXTRA.get(advantage, [])]
    assert main(argv) == 0
    rows = read_metrics(out)
    rewards = [m["reward/mean"] for m in rows]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    # Start ≈ 1/16 ("7" among 16 tokens); the learned policy answers "7" far more often.
    assert last > first + 0.25, rewards
    assert (out / "checkpoints" / "step_12" / "model.safetensors").is_file()
    assert all(key in row for row in rows for _, key in PROGRESS_KEYS)  # the bar shows what is logged
    # The reward audit: every credited answer writes the gold ('7'); logged once anything is credited.
    audited = [r["reward/credited_without_gold"] for r in rows if "reward/credited_without_gold" in r]
    assert audited and all(v == 0.0 for v in audited)


def test_dapo_preset_token_budget_and_periodic_eval(base_flags, read_metrics, tmp_path):
    out = tmp_path / "run"
    argv = ["--config", str(CONFIGS / "dapo.yaml"), "--out", str(out), *base_flags,
            "--algo.overlong-cache", "1", "--train.steps", "50", "--train.token-budget", "300",
            "--eval.every", "2", "--eval.n", "4", "--task.eval-split", "train", "--task.eval-limit", "4"]
    assert main(argv) == 0
    rows = read_metrics(out)
    # 64 tokens per round of 8 prompts × 8 one-token answers: the budget stops the run at the
    # first step that reaches 300 tokens, counting rounds that dynamic sampling discarded.
    assert rows[-1]["perf/tokens_total"] >= 300 > rows[-2]["perf/tokens_total"]
    assert all(r["perf/tokens_step"] == 64 * r["rollout/sampling_rounds"] for r in rows)
    assert all(1 <= r["rollout/sampling_rounds"] <= 3 for r in rows)
    assert {"eval/pass@1", "eval/pass@4"} <= rows[1].keys() and "eval/pass@1" not in rows[0]
    assert (out / "eval" / "step_2.json").is_file()


def test_agpo_adaptive_probe_tokens_count_toward_the_budget(base_flags, read_metrics, tmp_path):
    out = tmp_path / "run"
    argv = ["--config", str(CONFIGS / "agpo_adaptive.yaml"), "--out", str(out), *base_flags,
            "--train.steps", "3", "--algo.adaptive.probe-group-size", "4"]
    assert main(argv) == 0
    for r in read_metrics(out):
        # 8 prompts × (4 probe + 8 training) one-token responses.
        assert r["rollout/probe_tokens"] == 32 and r["perf/tokens_step"] == 96
        assert 0.05 <= r["ctrl/clip_eps"] <= 0.4 and 0.5 <= r["rollout/temperature"] <= 1.5
