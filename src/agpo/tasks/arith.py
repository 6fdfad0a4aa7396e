"""Procedural arithmetic for real chat models: 2-digit sums and differences, 2-digit × 1-digit
products and one-step word problems, each asking for the number alone.

| task         | problems                                               | e.g. gold |
|--------------|--------------------------------------------------------|-----------|
| arith        | all four kinds below, mixed                            |           |
| arith_add    | ``What is 23 + 45?`` (both 10–99)                      | 68        |
| arith_sub    | ``What is 84 - 29?`` (10–99, the first larger)         | 55        |
| arith_mul    | ``What is 17 * 6?`` (10–99 × 2–9)                      | 102       |
| arith_word   | ``Tom has 12 apples and buys 9 more. How many ...?``   | 21        |

Splits: ``test`` is a fixed sample of 256 problems of the task (the held-out split), ``train``
up to 4096 others, so no training prompt is a test prompt. Both are functions of the task name
alone (seeded), identical on every machine. Golds are integers:
the math verifier grades "68", "23 + 45 = 68" or "The answer is 68." (meta ``verifier`` math).

The measured regime (SmolLM2-135M-Instruct, chat template, temperature 1): pass@1 is low and
pass@k keeps rising with k — the setting in which RL can sharpen or narrow the boundary.
"""

from __future__ import annotations

import random
from itertools import zip_longest

from agpo.errors import UserError
from agpo.tasks.base import TASKS
from agpo.types import TaskItem

ASK = "Reply with only the number."
SPLIT_SIZES = {"test": 256, "train": 4096}
KINDS = ("add", "sub", "mul", "word")
_NAMES = ("Tom", "Sara", "Ali", "Mei", "Lena", "Omar", "Ravi", "Ana")
_THINGS = ("apples", "stickers", "marbles", "books", "coins", "cards", "pencils", "shells")
# (story, operation): the story's two numbers combine by the operation.
_STORIES: tuple[tuple[str, str], ...] = (
    ("{n} has {a} {t} and gets {b} more. How many {t} does {n} have now?", "+"),
    ("{n} has {a} {t} and gives away {b}. How many {t} does {n} have left?", "-"),
    ("{n} buys {b} boxes with {a} {t} in each box. How many {t} does {n} buy?", "*"),
)

_OPS = {"add": "+", "sub": "-", "mul": "*"}


def _pairs(op: str) -> list[tuple[int, int]]:
    """Every number pair of an operation: 10–99 + 10–99; 10–99 − a smaller 10–99; 10–99 × 2–9."""
    if op == "*":
        return [(a, b) for a in range(10, 100) for b in range(2, 10)]
    return [(a, b) for a in range(10, 100) for b in range(10, 100) if op == "+" or a > b]


def _apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _kind(kind: str, rng: random.Random) -> list[tuple[str, str, int]]:
    """Every problem of ``kind`` as (key, question, answer), in a seeded order. The key names
    the arithmetic and, for a word problem, its story: a held-out problem never reappears in
    training in other words."""
    if kind == "word":
        out = []
        for s, (story, op) in enumerate(_STORIES):
            for a, b in _pairs(op):
                text = story.format(n=rng.choice(_NAMES), t=rng.choice(_THINGS), a=a, b=b)
                out.append((f"word{s}:{a}{op}{b}", text, _apply(op, a, b)))
    else:
        op = _OPS[kind]
        out = [(f"{kind}:{a}{op}{b}", f"What is {a} {op} {b}?", _apply(op, a, b))
               for a, b in _pairs(op)]
    rng.shuffle(out)
    return out


def problems(task: str, split: str) -> list[TaskItem]:
    """The ``split`` (train | test) of ``task`` (arith or arith_KIND), as TaskItems; kinds take
    turns (a kind that runs out leaves the rest to the others: arith_mul has 720 problems)."""
    if split not in SPLIT_SIZES:
        raise UserError(f"--task {task}: split {split!r} does not exist; use train or test")
    kinds = KINDS if task == "arith" else (task.removeprefix("arith_"),)
    rng = random.Random(f"agpo.tasks.arith:{task}")
    pools = [_kind(k, rng) for k in kinds]
    turns = [p for group in zip_longest(*pools) for p in group if p is not None]
    test, rest = turns[: SPLIT_SIZES["test"]], turns[SPLIT_SIZES["test"]:]
    chosen = test if split == "test" else rest[: SPLIT_SIZES["train"]]
    return [TaskItem(id=f"{task}-{split}-{i}", prompt=f"{q} {ASK}", gold=str(ans),
                     meta={"task": task, "key": key, "verifier": "math"})
            for i, (key, q, ans) in enumerate(chosen)]


def _register(task: str) -> None:
    @TASKS.register(task)
    def load(split: str) -> list[TaskItem]:
        return problems(task, split)

    load.__doc__ = f"{task}: procedural arithmetic (agpo.tasks.arith), splits train/test"


for _task in ("arith", *(f"arith_{k}" for k in KINDS)):
    _register(_task)
