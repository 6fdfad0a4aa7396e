"""Agreement with a public equivalence set (tests/rewards/data/equivalence.jsonl).

Cases are reconstructed from memory of the MATH benchmark's equivalence tests (Hendrycks et al.,
``math_equivalence.py``) and math-verify's test suite — nothing could be downloaded here — plus
benchmark gold formats, naive-grader traps and full-response extraction cases written for agpo.
Each row records its source; where agpo's documented policy differs from the source's verdict
(MATH's string grader treats '10, 4, -2' and '4, 10, -2' as different), the row says so in
``note`` and expects agpo's verdict.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agpo.rewards import RewardFn
from agpo.types import TaskItem

ROWS = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "equivalence.jsonl").read_text().splitlines()
]


def item(gold: str) -> TaskItem:
    return TaskItem(id="q", prompt="", gold=gold)


@pytest.fixture(scope="module")
def verdicts(math_reward: RewardFn) -> list[bool]:
    results = math_reward.batch([item(r["gold"]) for r in ROWS], [r["pred"] for r in ROWS])
    return [res.score == 1.0 for res in results]


def test_set_is_broad_and_sourced() -> None:
    sources = {r["source"].split()[0] for r in ROWS}
    assert len(ROWS) >= 150
    assert {"hendrycks/math", "huggingface/Math-Verify"} <= sources
    assert sum(r["expected"] for r in ROWS) > 40 and sum(not r["expected"] for r in ROWS) > 40


def test_agreement_at_least_97_percent(verdicts: list[bool]) -> None:
    wrong = [
        (r["gold"], r["pred"], r["expected"]) for r, v in zip(ROWS, verdicts) if v != r["expected"]
    ]
    agreement = 1 - len(wrong) / len(ROWS)
    assert agreement >= 0.97, f"agreement {agreement:.3f}; disagreements: {wrong}"


def test_every_naive_grader_trap_is_right(verdicts: list[bool]) -> None:
    wrong = [
        (r["gold"], r["pred"])
        for r, v in zip(ROWS, verdicts)
        if r["source"].startswith("naive-grader trap") and v != r["expected"]
    ]
    assert wrong == []
