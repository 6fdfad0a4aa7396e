"""The `exact` verifier's optional answer pattern: the last match's group is the answer."""

from __future__ import annotations

import pytest

from agpo.errors import UserError
from agpo.rewards import RewardConfig, build_reward
from agpo.types import TaskItem

ITEM = TaskItem("t/0", "926+053=", "979")
STEPS = r"\|([0-9]+)\s*$"


def _score(completion: str, item: TaskItem = ITEM, **cfg: object):  # noqa: ANN202
    with build_reward(RewardConfig(verifier="exact", workers=0, **cfg)) as reward:  # type: ignore[arg-type]
        return reward(item, completion)


def test_default_is_todays_whole_string_match() -> None:
    assert _score(" 979").score == 1.0
    r = _score(" 9+0=9,2+5=7,6+3=9|979")
    assert (r.score, r.failure) == (0.0, "wrong")


def test_pattern_group_one_is_compared_with_the_stripped_gold() -> None:
    r = _score(" 9+0=9,2+5=7,6+3=9|979", exact_pattern=STEPS)
    assert (r.score, r.parsed, r.failure) == (1.0, "979", None)
    r = _score("\t9+0=9,2+5+1=8,6+3=9|989", exact_pattern=STEPS)
    assert (r.score, r.parsed, r.failure) == (0.0, "989", "wrong")
    assert _score(" 9+0=9|979 \n", TaskItem("t/1", "p", " 979 "), exact_pattern=STEPS).score == 1.0


def test_last_match_wins_and_no_group_means_whole_match() -> None:
    # "[0-9]{3}" matches 979 and then 123: the last one is the answer.
    r = _score("979 then 123", exact_pattern=r"[0-9]{3}")
    assert (r.score, r.parsed) == (0.0, "123")
    assert _score("123 then 979", exact_pattern=r"[0-9]{3}").score == 1.0
    assert _score("a=1, a=979", exact_pattern=r"a=([0-9]+)").score == 1.0


def test_no_match_is_no_answer() -> None:
    r = _score(" 9+0=9,2+5=7,6+3=9", exact_pattern=STEPS)
    assert (r.score, r.parsed, r.failure) == (0.0, None, "no_answer")
    # Anchored at the end: digits followed by more steps are not the answer.
    assert _score("|979,1+1=2", exact_pattern=STEPS).failure == "no_answer"


def test_task_meta_pattern_is_used_when_the_config_has_none() -> None:
    item = TaskItem("t/2", "926+053=", "979", {"verifier": "exact", "exact_pattern": STEPS})
    assert _score(" 9+0=9,2+5=7,6+3=9|979", item).score == 1.0
    # The config's pattern overrides the task's.
    assert _score("answer 979|000", item, exact_pattern=r"answer ([0-9]+)").score == 1.0


def test_empty_gold_is_still_bad_gold() -> None:
    assert _score("|979", TaskItem("t/3", "p", "  "), exact_pattern=STEPS).failure == "bad_gold"


def test_bad_patterns_are_rejected_naming_the_flag_or_item() -> None:
    with pytest.raises(ValueError, match="--reward.exact-pattern"):
        RewardConfig(exact_pattern="(")
    item = TaskItem("t/4", "p", "1", {"exact_pattern": "("})
    with pytest.raises(UserError, match="t/4"):
        _score("1", item)


# A task row's own pattern is untrusted input. With `re`, these patterns take hours on this
# completion (exponential backtracking: 2^60 and 1.6^60 steps; `re` cannot be interrupted, not
# even by SIGALRM), so on the old code these tests hang until pytest-timeout fails them.
CATASTROPHIC = "a" * 60 + "b"


@pytest.mark.timeout(60)
def test_nested_quantifier_pattern_of_a_task_row_returns() -> None:
    # (a+)+$: the regex engine's own optimisations see there is no match at once.
    item = TaskItem("t/5", "p", "a", {"exact_pattern": r"(a+)+$"})
    assert _score(CATASTROPHIC, item, timeout_s=1.0).failure == "no_answer"


@pytest.mark.timeout(60)
def test_backtracking_pattern_of_a_task_row_is_a_verifier_timeout() -> None:
    # (a|aa)+$ backtracks in every engine that backtracks: the item deadline stops it.
    item = TaskItem("t/6", "p", "a", {"exact_pattern": r"(a|aa)+$"})
    with build_reward(RewardConfig(verifier="exact", workers=0, timeout_s=0.2)) as reward:
        results = reward.batch([item, ITEM], [CATASTROPHIC, " 979"])
        assert [(r.score, r.failure) for r in results] == [(0.0, "timeout"), (1.0, None)]
        assert reward.stats["timeouts"] == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cfg", [
    {"verifier": "exact", "exact_pattern": r"(a|aa)+$"},
    {"verifier": "format", "format_prefixes": ("a",), "format_require_reasoning": False,
     "format_pattern": r"(a|aa)+$"},
    {"verifier": "label", "labels": ("c", "d"), "label_pattern": r"(?:a|aa)+({labels})$"},
], ids=["exact-flag", "format-pattern", "label-pattern"])
def test_every_pattern_on_model_output_has_the_deadline(cfg: dict) -> None:
    with build_reward(RewardConfig(workers=0, timeout_s=0.2, **cfg)) as reward:
        assert reward(TaskItem("t/7", "p", "c"), CATASTROPHIC).failure == "timeout"
