"""Hostile responses: every one returns within the item deadline, scores 0 and executes nothing.

The deadline is asserted by the harness (pytest-timeout kills a test that hangs), never by a
wall-clock threshold inside the test: a shared 2-core machine makes those flaky.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agpo.rewards import RewardConfig, RewardFn, build_reward
from agpo.types import TaskItem

# strict_reward: 1 worker, timeout_s = 1.0, no cache. A test may hold several items of ~1 s
# each plus a worker restart (~1-2 s on a loaded machine); 60 s means "hung", not "slow".
pytestmark = pytest.mark.timeout(60)


def item(gold: str) -> TaskItem:
    return TaskItem(id="q", prompt="", gold=gold)


@pytest.mark.parametrize(
    "completion",
    [
        "\\boxed{2^{2^{2^{100}}}}",  # sympy would try to evaluate a tower of powers
        "\\boxed{9^{9^{9^{9}}}}",
        "\\boxed{100000000!}",
        "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",  # thousands of nested braces
        "\\boxed{" + "{" * 450 + "1" + "}" * 450 + "}",  # short enough to reach the parser
        "\\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}",
        "Answer: " + "1+" * 400 + "1",
        "x" * 1_000_000 + "\\boxed{1}",  # a 1 MB response: only the tail matters
        "\\boxed{" + "1" * 1_000_000 + "}",  # a 1 MB answer: too long to parse
        "####\n" * 200_000,  # a million characters of markers that state nothing
        "So 1" + " " * 500_000 + "is or 2 apples.",  # spaces where the reader's regexes backtrack
        "It is 1 is " * 50_000 + "2.",  # a relation chain half a million characters long
    ],
    ids=["tower", "tower9", "factorial", "braces", "braces-450", "parens", "long-sum", "1MB-text",
         "1MB-answer", "markers", "spaces", "relations"],
)
def test_pathological_answer_returns_zero(strict_reward: RewardFn, completion: str) -> None:
    # An equation gold: the answer reaches sympy in a worker (a number gold never lets an
    # expression get that far, see the next test).
    result = strict_reward(item("x = 5"), completion)
    assert result.score == 0.0
    assert result.failure in {"timeout", "wrong", "unparsed", "too_long", "error"}


@pytest.mark.parametrize("completion", ["\\boxed{2^{2^{2^{100}}}}", "\\boxed{100000000!}",
                                        "Answer: " + "1+" * 400 + "1"])
def test_an_expression_for_a_number_gold_never_reaches_a_worker(completion: str) -> None:
    with build_reward(RewardConfig(verifier="math", workers=1, cache_size=0)) as reward:
        result = reward(item("5"), completion)
        assert (result.score, result.failure) == (0.0, "unevaluated")
        assert reward._pool is None


def test_1mb_text_ending_in_the_right_answer_is_still_graded(strict_reward: RewardFn) -> None:
    assert strict_reward(item("5"), "y" * 1_000_000 + "\\boxed{5}").score == 1.0


@pytest.mark.parametrize(
    "template",
    [
        "\\boxed{{__import__('os').system('touch {p}')}}",
        "Answer: __import__('os').system('touch {p}')",
        "#### exec(\"open('{p}', 'w').write('x')\")",
        "\\boxed{{eval(\"__import__('os').system('touch {p}')\")}}",
        "{{__import__('os').system('touch {p}')}}",
        "\\boxed{{\\text{{__import__('os').system('touch {p}')}}}}",
    ],
)
def test_python_in_the_response_is_never_executed(
    strict_reward: RewardFn, tmp_path: Path, template: str
) -> None:
    sentinel = tmp_path / "pwned"
    result = strict_reward(item("5"), template.format(p=sentinel))
    assert result.score == 0.0
    assert not sentinel.exists()


def test_python_in_the_gold_is_never_executed(strict_reward: RewardFn, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    gold = f"__import__('os').system('touch {sentinel}')"
    result = strict_reward(item(gold), "\\boxed{5}")
    assert result.score == 0.0
    assert not sentinel.exists()


def test_a_batch_of_hostile_and_normal_items_keeps_order(strict_reward: RewardFn) -> None:
    items = [item("x = 5"), item("\\frac{1}{2}"), item("5"), item("7")]
    completions = ["\\boxed{2^{2^{2^{100}}}}", "\\boxed{0.5}", "\\boxed{5}", "\\boxed{8}"]
    scores = [r.score for r in strict_reward.batch(items, completions)]
    assert scores == [0.0, 1.0, 1.0, 0.0]
