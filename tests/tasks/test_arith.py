"""agpo.tasks.arith: seeded splits with the held-out problems never trained on; exact golds."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from agpo.errors import UserError
from agpo.tasks import load_task


def test_splits_are_fixed_disjoint_and_sized() -> None:
    test, train = load_task("arith", "test"), load_task("arith", "train")
    assert (len(test), len(train)) == (256, 4096)
    assert not {i.meta["key"] for i in test} & {i.meta["key"] for i in train}
    assert [i.prompt for i in load_task("arith", "test")] == [i.prompt for i in test]  # seeded
    # The kinds take turns: 256 = 4 × 64, the word problems split among their three stories.
    kinds = Counter(re.sub(r"\d$", "", i.meta["key"].split(":")[0]) for i in test)
    assert kinds == {"add": 64, "sub": 64, "mul": 64, "word": 64}


def test_golds_are_the_arithmetic_of_the_key() -> None:
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    for item in load_task("arith", "test") + load_task("arith_mul", "train"):
        a, op, b = re.fullmatch(r"\w+:(\d+)([-+*])(\d+)", item.meta["key"]).groups()
        assert item.gold == str(ops[op](int(a), int(b)))
        assert item.prompt.endswith("Reply with only the number.") and f"{a}" in item.prompt
        assert item.meta["verifier"] == "math"


def test_worked_examples() -> None:
    # 23 + 45 = 68 … the first test problem of arith_add, whatever it is, reads and grades so:
    item = load_task("arith_add", "test")[0]
    a, b = map(int, re.findall(r"\d+", item.prompt))
    assert item.prompt == f"What is {a} + {b}? Reply with only the number." and item.gold == str(a + b)
    # arith_mul has 90 × 8 = 720 problems: 256 held out, the other 464 to train on.
    assert len(load_task("arith_mul", "train")) == 720 - 256


def test_unknown_split_is_one_line() -> None:
    with pytest.raises(UserError, match="--task arith: split 'validation' does not exist; use train or test"):
        load_task("arith", "validation")
