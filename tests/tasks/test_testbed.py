"""The testbed task: hand-worked problems, the split, and the S / strategy structure."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.tasks import load_task
from agpo.tasks import testbed as tasks
from agpo.tasks.testbed import Problem


def test_hand_worked_problem() -> None:
    # a = 338, b = 548 written least-significant first: "833+845=".
    p = Problem((8, 3, 3), (8, 4, 5))
    assert p.prompt == "833+845="
    # 338 + 548 = 886 → least-significant first "688"; the units column 8 + 8 = 16 carries: S.
    assert p.gold == "688" and p.is_s
    # A ignores the carry: 6, 3+4 = 7, 3+5 = 8 → "678" (wrong); B adds it to the tens: "688".
    assert tasks.strategy_digits(p, "A") == (6, 7, 8)
    assert tasks.strategy_digits(p, "B") == (6, 8, 8)


def test_markers_are_whitespace_so_exact_grades_the_digits() -> None:
    item = tasks.load_testbed_add("test", limit=1)[0]
    assert tasks.score(item, " " + item.gold) == 1.0  # strategy A's marker
    assert tasks.score(item, "\t" + item.gold) == 1.0  # strategy B's marker
    assert tasks.score(item, " " + item.gold + "0") == 0.0
    assert tasks.strategy_of("\t123") == "B" and tasks.strategy_of(" 123") == "A"
    assert tasks.strategy_of("123") is None


def test_exact_verifier_agrees_with_the_testbed_score() -> None:
    from agpo.rewards import build_reward
    from agpo.rewards.config import RewardConfig

    items = tasks.load_testbed_add("test", limit=20)
    # Per item: A's marker + gold, B's marker + gold, and a wrong 4-digit answer.
    pairs = [(it, c) for it in items for c in (" " + it.gold, "\t" + it.gold, " 9" + it.gold)]
    with build_reward(RewardConfig(verifier="exact", workers=0)) as reward:
        got = [r.score for r in reward.batch([it for it, _ in pairs], [c for _, c in pairs])]
    assert got == [tasks.score(it, c) for it, c in pairs]


@settings(deadline=None, derandomize=True, max_examples=200)
@given(seed=st.integers(0, 2**32 - 1), s=st.booleans())
def test_each_strategy_is_right_exactly_on_its_side(seed: int, s: bool) -> None:
    p = tasks.draw_problem(random.Random(seed), s)
    assert p.is_s == s
    digits = {k: "".join(map(str, tasks.strategy_digits(p, k))) for k in "AB"}
    # A is right on every non-S problem and wrong on every S one; B the other way round.
    assert (digits["A"] == p.gold) == (not s)
    assert (digits["B"] == p.gold) == s
    # They differ only in the tens digit, the one the corpus noise never touches.
    assert digits["A"][0] == digits["B"][0] and digits["A"][2] == digits["B"][2]


def test_splits() -> None:
    test = tasks.load_testbed_add("test")
    assert len(test) == tasks.TEST_SIZE == len({it.prompt for it in test})
    assert sum(it.meta["is_s"] for it in test) == 40
    train_prompts = {it.prompt for it in tasks.load_testbed_add("train")}
    assert not train_prompts & {it.prompt for it in test}
    assert tasks.load_testbed_add("test") == test  # fixed, not re-drawn


def test_registered_in_agpo_tasks() -> None:
    items = load_task("testbed_add", "test", limit=5)
    assert [it.id for it in items] == [f"testbed_add/test/{i}" for i in range(5)]
    assert all(it.meta["verifier"] == "exact" for it in items)
    assert all(it.meta["subset"] in {"S", "non-S"} for it in items)
