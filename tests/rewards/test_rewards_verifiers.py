"""exact, label, format, weighted combination, gold handling, cache and config validation."""

from __future__ import annotations

import pytest

from agpo.errors import UserError
from agpo.rewards import VERIFIERS, RewardConfig, RewardFn, build_reward, is_skip
from agpo.types import TaskItem


def item(gold: str, id: str = "q") -> TaskItem:
    return TaskItem(id=id, prompt="", gold=gold)


def scores(cfg: RewardConfig, golds: list[str], completions: list[str]) -> list[float]:
    with build_reward(cfg) as reward:
        return [r.score for r in reward.batch([item(g) for g in golds], completions)]


def test_registry_names() -> None:
    assert VERIFIERS.names() == ["exact", "format", "label", "math"]


def test_exact_is_stripped_string_equality_without_workers() -> None:
    with build_reward(RewardConfig(verifier="exact")) as reward:
        results = reward.batch([item("A123")] * 3, [" A123\n", "A124", "a123"])
        assert [r.score for r in results] == [1.0, 0.0, 0.0]
        assert [r.failure for r in results] == [None, "wrong", "wrong"]
        assert reward._pool is None  # in-process, no pool


def test_label_exact_parses_last_label_from_free_text() -> None:
    cfg = RewardConfig(verifier="label", labels=("E", "S", "C", "I"))
    completions = [
        "The item matches the query exactly.\nLabel: E",
        "label: S ... on reflection, Label: C",  # the last match wins
        "I",  # a bare label counts
        "It is relevant.",  # no label
        "Answer: (e)",  # case-insensitive, parenthesised
    ]
    with build_reward(cfg) as reward:
        results = reward.batch([item("C")] * 4 + [item("E")], completions)
    assert [(r.score, r.parsed, r.failure) for r in results] == [
        (0.0, "E", "wrong"),
        (1.0, "C", None),
        (0.0, "I", "wrong"),
        (0.0, None, "no_answer"),
        (1.0, "E", None),
    ]


def test_label_ordinal_reward_by_distance() -> None:
    # K = 5 labels "1".."5", gold "4": reward = 1 - |pred - 4| / (5 - 1)
    #   pred 4 → 1;  pred 5 → 1 - 1/4 = 0.75;  pred 2 → 1 - 2/4 = 0.5;  pred 1 → 1 - 3/4 = 0.25
    cfg = RewardConfig(verifier="label", labels=("1", "2", "3", "4", "5"), label_reward="ordinal")
    got = scores(cfg, ["4"] * 4, ["Rating: 4", "rating: 5", "Rating = 2", "1"])
    assert got == [1.0, 0.75, 0.5, 0.25]


def test_label_gold_outside_the_label_set_is_a_skip() -> None:
    with build_reward(RewardConfig(verifier="label")) as reward:
        result = reward(item("X"), "Label: E")
    assert is_skip(result) and result.score == 0.0


def test_format_requires_reasoning_then_answer_line() -> None:
    cfg = RewardConfig(verifier="format")
    completions = [
        "First add the units.\nThen the tens.\nAnswer: 42",
        "Answer: 42",  # no reasoning
        "Some reasoning.\nSo it is 42.",  # no answer line
        "Reasoning.\nThe result is \\boxed{42}.",
        "",
    ]
    assert scores(cfg, ["42"] * 5, completions) == [1.0, 0.0, 0.0, 1.0, 0.0]


def test_format_pattern_adds_a_requirement() -> None:
    cfg = RewardConfig(verifier="format", format_pattern=r"(?s)<think>.+</think>")
    got = scores(cfg, ["1"] * 2, ["<think>add</think>\nAnswer: 1", "add\nAnswer: 1"])
    assert got == [1.0, 0.0]


def test_weighted_combination(math_reward: RewardFn) -> None:
    # math:1.0 + format:0.25 — right answer in format: 1 + 0.25; right answer, no reasoning:
    # 1 + 0; wrong answer in format: 0 + 0.25.
    cfg = RewardConfig(verifier="math:1.0,format:0.25", workers=1)
    with build_reward(cfg) as reward:
        results = reward.batch(
            [item("6")] * 3, ["2 times 3.\nAnswer: 6", "Answer: 6", "2 times 3.\nAnswer: 5"]
        )
    assert [r.score for r in results] == [1.25, 1.0, 0.25]
    assert dict(results[0].components) == {"math": 1.0, "format": 1.0}
    assert results[2].failure == "wrong"  # from the first component


def test_unparseable_gold_is_skip_not_reward(math_reward: RewardFn) -> None:
    results = math_reward.batch(
        [item("\\frac{1}{"), item(""), item("\\frac{1}{")],
        ["\\boxed{\\frac{1}{}", "5", "no answer\nat all"],
    )
    assert all(is_skip(r) and r.score == 0.0 for r in results)


def test_bad_gold_error_names_the_item() -> None:
    cfg = RewardConfig(verifier="math", workers=1, bad_gold="error")
    with build_reward(cfg) as reward, pytest.raises(UserError, match="item 'q17'"):
        reward.batch([item("1"), item("\\frac{1}{", id="q17")], ["1", "\\boxed{1}"])


def test_no_answer_and_too_long(math_reward: RewardFn) -> None:
    results = math_reward.batch(
        [item("5"), item("5")], ["I am not sure.\nMaybe later.", "\\boxed{" + "1" * 5000 + "}"]
    )
    assert [(r.score, r.failure) for r in results] == [(0.0, "no_answer"), (0.0, "too_long")]
    assert results[1].parsed is not None and len(results[1].parsed) == 1000


def test_duplicates_hit_the_cache(math_reward: RewardFn) -> None:
    # 64 samples of one problem drawn from 3 answers, two of them spelled two ways:
    # \frac{1}{3}, \dfrac{1}{3} and "$\frac{1}{3}$" share one key; 0.5 and 1/2 do not.
    answers = ["\\frac{1}{3}", "\\dfrac{1}{3}", "$\\frac{1}{3}$", "0.5", "1/2", "\\frac{1}{4}"]
    completions = [f"so \\boxed{{{answers[i % 6]}}}" for i in range(64)]
    before = math_reward.stats.copy()
    results = math_reward.batch([item("\\frac{1}{3}", id="cache")] * 64, completions)
    jobs = math_reward.stats["worker_jobs"] - before["worker_jobs"]
    assert jobs <= 4  # {1/3, 0.5, 1/2, 1/4}; fewer if earlier tests cached some
    assert [r.score for r in results[:6]] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    again = math_reward.stats["worker_jobs"]
    math_reward.batch([item("\\frac{1}{3}", id="cache")] * 64, completions)
    assert math_reward.stats["worker_jobs"] == again  # the second batch is all cache


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"verifier": "math:x"}, "--reward.verifier"),
        ({"extract_order": ("boxed", "last_line")}, "--reward.extract-order"),
        ({"timeout_s": 0.0}, "--reward.timeout-s"),
        ({"label_reward": "graded"}, "--reward.label-reward"),
        ({"labels": ("E",)}, "--reward.labels"),
        ({"label_pattern": "label: (E|S)"}, "--reward.label-pattern"),
        ({"format_pattern": "("}, "--reward.format-pattern"),
    ],
)
def test_config_rejects_bad_values_naming_the_flag(kwargs: dict, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        RewardConfig(**kwargs)


def test_unknown_verifier_lists_valid_names() -> None:
    with pytest.raises(UserError, match="valid names: exact, format, label, math"):
        build_reward(RewardConfig(verifier="maths"))
