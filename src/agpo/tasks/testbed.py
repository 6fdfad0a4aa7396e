"""The testbed's procedural task: answer-only 3-digit addition, digits least-significant first.

Why this task shows boundary shrinkage (measured design, docs/testbed.md):
- 80% of problems have no carry at all ("non-S"); 20% have a units carry and no other carry
  ("S", the niche). The answer is (a + b) mod 1000, written least-significant digit first.
- The base model's pretraining corpus mixes two flawed solvers, chosen independently of the
  problem: strategy A (97%) adds columns and never carries — right on every non-S problem, wrong
  on every S problem; strategy B (3%) always carries units → tens — right on every S problem,
  wrong on every non-S one.
- The strategy is marked by the completion's first character, a space (A) or a tab (B): the
  choice is one token the model samples before the digits, and the ``exact`` verifier (stripped
  string match) grades the three answer digits alone.
- Removable noise: the units and hundreds digits are replaced by a random wrong digit with
  probability 0.2 each (never the tens digit, the only one A and B disagree on, so A cannot hit an
  S answer by luck). RL gains pass@1 by removing the noise; the niche survives only if B does.

Prompt ``"a0a1a2+b0b1b2="``, completion ``" d0d1d2"`` (A) or ``"\td0d1d2"`` (B), gold
``"d0d1d2"``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from agpo.errors import UserError
from agpo.tasks.base import TASKS
from agpo.types import TaskItem

ALPHABET = "0123456789+= \t"
"""Every character the testbed's prompts and completions use (the tokenizer's alphabet)."""

TEST_SIZE = 200
TRAIN_SIZE = 20000
S_SHARE = 0.2
_SPLIT_SEED = {"train": 1, "test": 2}

# Column digit pairs by the carry they produce: no carry (sum ≤ 9), carry (sum ≥ 10), and
# "absorbs an incoming carry without carrying" (sum ≤ 8).
NO_CARRY = [(x, y) for x in range(10) for y in range(10) if x + y <= 9]
CARRY = [(x, y) for x in range(10) for y in range(10) if x + y >= 10]
ABSORB = [(x, y) for x in range(10) for y in range(10) if x + y <= 8]


@dataclass(frozen=True)
class Problem:
    """Two 3-digit numbers as digit lists, least-significant first."""

    a: tuple[int, int, int]
    b: tuple[int, int, int]

    @property
    def is_s(self) -> bool:
        """The niche: a units carry (only strategy B gets it right)."""
        return self.a[0] + self.b[0] >= 10

    @property
    def prompt(self) -> str:
        return "".join(map(str, self.a)) + "+" + "".join(map(str, self.b)) + "="

    @property
    def key(self) -> int:
        return _key(self.a, self.b)

    def answer_digits(self) -> tuple[int, int, int]:
        total = _value(self.a) + _value(self.b)
        return (total % 10, total // 10 % 10, total // 100 % 10)

    @property
    def gold(self) -> str:
        return "".join(map(str, self.answer_digits()))


def _value(d: Sequence[int]) -> int:
    return d[0] + 10 * d[1] + 100 * d[2]


def _key(a: Sequence[int], b: Sequence[int]) -> int:
    return _value(a) * 1000 + _value(b)


def draw_problem(rng: random.Random, s: bool) -> Problem:
    """One problem of the given kind, uniform over that kind's digit pairs per column."""
    cols = [rng.choice(CARRY), rng.choice(ABSORB), rng.choice(NO_CARRY)] if s else [
        rng.choice(NO_CARRY) for _ in range(3)
    ]
    a = tuple(c[0] for c in cols)
    b = tuple(c[1] for c in cols)
    return Problem(a, b)  # type: ignore[arg-type]


def test_problems() -> list[Problem]:
    """The fixed held-out set: 200 distinct problems, exactly 40 of them S, in shuffled order."""
    rng = random.Random(_SPLIT_SEED["test"])
    n_s = round(TEST_SIZE * S_SHARE)
    seen: set[int] = set()
    out: list[Problem] = []
    for s, count in ((True, n_s), (False, TEST_SIZE - n_s)):
        while sum(p.is_s == s for p in out) < count:
            p = draw_problem(rng, s)
            if p.key not in seen:
                seen.add(p.key)
                out.append(p)
    rng.shuffle(out)
    return out


def test_keys() -> frozenset[int]:
    return frozenset(p.key for p in test_problems())


def train_problems(size: int = TRAIN_SIZE) -> list[Problem]:
    """RL training problems: the same mix, never a held-out problem (repeats allowed)."""
    rng = random.Random(_SPLIT_SEED["train"])
    held_out = test_keys()
    out: list[Problem] = []
    while len(out) < size:
        p = draw_problem(rng, rng.random() < S_SHARE)
        if p.key not in held_out:
            out.append(p)
    return out


def strategy_digits(p: Problem, strategy: str) -> tuple[int, int, int]:
    """The flawed solvers: A never carries; B always carries units → tens."""
    carry = 1 if strategy == "B" else 0
    return (
        (p.a[0] + p.b[0]) % 10,
        (p.a[1] + p.b[1] + carry) % 10,
        (p.a[2] + p.b[2]) % 10,
    )


MARKERS = {"A": " ", "B": "\t"}
"""The first completion character names the strategy; whitespace, so ``exact`` ignores it."""


def render_completion(strategy: str, digits: Sequence[int]) -> str:
    return MARKERS[strategy] + "".join(map(str, digits))


def strategy_of(completion: str) -> str | None:
    """``"A"`` / ``"B"`` from the marker a completion starts with (``None``: neither)."""
    for name, marker in MARKERS.items():
        if completion.startswith(marker):
            return name
    return None


def score(item: TaskItem, completion: str) -> float:
    """The ``exact`` verifier's verdict: stripped completion equals the gold digits."""
    return float(completion.strip() == item.gold)


def to_item(p: Problem, index: int, split: str, task: str) -> TaskItem:
    return TaskItem(
        id=f"{task}/{split}/{index}",
        prompt=p.prompt,
        gold=p.gold,
        meta={"verifier": "exact", "subset": "S" if p.is_s else "non-S", "is_s": p.is_s},
    )


@TASKS.register("testbed_add")
def load_testbed_add(split: str = "test", limit: int | None = None) -> list[TaskItem]:
    """The fixed held-out problems (``test``, 200) or the RL training problems (``train``)."""
    if split not in _SPLIT_SEED:
        raise UserError(f"--split {split!r}: the testbed has {', '.join(_SPLIT_SEED)}")
    problems = test_problems() if split == "test" else train_problems()
    if limit is not None:
        problems = problems[:limit]
    return [to_item(p, i, split, "testbed_add") for i, p in enumerate(problems)]


# --------------------------------------------------------------------------- worked steps
#
# testbed_add_steps: the same problems, S/non-S split, strategies, markers and answer rule as
# testbed_add, but the completion first writes each column's digit sum, units first:
#   A: " 3+4=7,5+2=7,1+1=2|772"      (column sums, never a carry)
#   B: "\t3+4=7,5+2+1=8,1+1=2|872"   (the tens step adds the carry B always assumes)
# A's steps are always true column sums (on S it then drops the units carry); B's tens step is
# the only one that differs from A's, and it is right exactly on S problems. A units sum ≥ 10 is
# written in full ("7+5=12"), so outputs vary in length (22–25 characters + EOS) and the length
# and entropy diagnostics have something to measure. Noise, as in testbed_add, touches only the
# final units and hundreds digits after "|": the steps stay clean, so RL can learn to copy them.

STEPS_ALPHABET = ALPHABET + ",|"
"""testbed_add_steps' characters (testbed_add's alphabet, unchanged, plus the separators)."""

STEPS_PATTERN = r"\|([0-9]+)\s*$"
"""The answer of a worked-steps completion: the digits after the last "|" that end it."""


def step_sums(p: Problem, strategy: str) -> list[tuple[int, int, int, int]]:
    """(a_i, b_i, carry_in, column value) per column, units first, as the strategy writes it."""
    carries = (0, 1 if strategy == "B" else 0, 0)
    return [(x, y, c, x + y + c) for x, y, c in zip(p.a, p.b, carries, strict=True)]


def render_steps(p: Problem, strategy: str, digits: Sequence[int]) -> str:
    """The worked completion: marker, the strategy's column steps, "|", the answer digits."""
    steps = ",".join(
        f"{x}+{y}+{c}={v}" if c else f"{x}+{y}={v}" for x, y, c, v in step_sums(p, strategy)
    )
    return MARKERS[strategy] + steps + "|" + "".join(map(str, digits))


def to_steps_item(p: Problem, index: int, split: str) -> TaskItem:
    item = to_item(p, index, split, "testbed_add_steps")
    return TaskItem(item.id, item.prompt, item.gold,
                    {**item.meta, "exact_pattern": STEPS_PATTERN})


@TASKS.register("testbed_add_steps")
def load_testbed_add_steps(split: str = "test", limit: int | None = None) -> list[TaskItem]:
    """testbed_add's problems (same splits, same order), graded on the answer after "|"."""
    if split not in _SPLIT_SEED:
        raise UserError(f"--split {split!r}: the testbed has {', '.join(_SPLIT_SEED)}")
    problems = test_problems() if split == "test" else train_problems()
    if limit is not None:
        problems = problems[:limit]
    return [to_steps_item(p, i, split) for i, p in enumerate(problems)]


TASK_ALPHABETS = {"testbed_add": ALPHABET, "testbed_add_steps": STEPS_ALPHABET}
"""The testbed tasks a base model can be pretrained on, with their tokenizer alphabets."""
