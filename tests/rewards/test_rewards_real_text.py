"""Rewards a person would agree with: tests/rewards/data/real_text.jsonl (docs/grading.md).

Completions of the built-in model smollm2-135m-instruct, sampled by ``agpo eval`` through
scripts/build_real_text_set.py (each row names its model, task, template, seed and sampling
settings), each labelled by a person reading the response's final stated answer, with the
reason; plus hand-written adversarial rows (``"source": "synthetic"``). The math verifier must
agree with the reader on at least 98% of the rows and never less than plain math-verify (its
default extraction over the whole response), and must never credit an answer that restates the
question or leaves the arithmetic undone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from math_verify import parse, verify

from agpo.rewards import RewardConfig, RewardFn, build_reward
from agpo.rewards.worker import parse_math
from agpo.tasks import load_task
from agpo.types import RewardResult, TaskItem

ROWS = [json.loads(line) for line in
        (Path(__file__).parent / "data" / "real_text.jsonl").read_text().splitlines()]
REAL = [r for r in ROWS if r["source"] != "synthetic"]
SYNTHETIC = [r for r in ROWS if r["source"] == "synthetic"]
PROVENANCE = ("model", "task", "template", "seed", "temperature", "top_p", "max_new_tokens",
              "problem_id", "sample")
ADVERSARIAL = ("restated question", "expression without result", "gold only as an operand",
               "several conflicting answers")


def plain_math_verify(gold: str, completion: str) -> bool:
    """Plain math-verify: the gold parsed as agpo parses it, the response with math-verify's
    default extraction."""
    return bool(verify(parse_math(gold), parse(completion)))


@pytest.fixture(scope="module")
def verdicts(math_reward: RewardFn) -> list[RewardResult]:
    items = [TaskItem(r["id"], r["prompt"], r["gold"]) for r in ROWS]
    return math_reward.batch(items, [r["completion"] for r in ROWS])


def test_set_is_real_hand_labelled_and_sourced() -> None:
    assert len(REAL) >= 150
    assert all(r["source"] == r["model"] == "smollm2-135m-instruct" for r in REAL)
    assert all(all(k in r for k in PROVENANCE) for r in REAL)
    assert {"chat", "deepseek_math", "qwen_math_cot"} <= {r["template"] for r in REAL}
    assert {"arith", "arith_word", "word2", "gsm8k_fixture"} <= {r["task"] for r in REAL}
    for rows in (REAL, SYNTHETIC):
        labels = [r["label"] for r in rows]
        assert set(labels) == {"correct", "wrong"} and labels.count("correct") >= 10
    assert all(r["reason"].strip() for r in ROWS)
    assert set(ADVERSARIAL) <= {r["class"] for r in SYNTHETIC}
    assert len({r["id"] for r in ROWS}) == len(ROWS)


def test_agreement_at_least_98_percent_and_never_below_plain_math_verify(
    verdicts: list[RewardResult],
) -> None:
    # Measured on this commit: agpo 386/387 (99.7%), plain math-verify 358/387 (92.5%); the
    # verifier before the blanks were read (2026-12-05) credited 6 of the 7 blanked expressions
    # (380/387); before issue 23: 351 of the first 380 rows. The one miss (real-132) states
    # 61 * 8 = 488, then a digression whose last number is 0.
    expected = [r["label"] == "correct" for r in ROWS]
    agpo = [v.score == 1.0 for v in verdicts]
    plain = [plain_math_verify(r["gold"], r["completion"]) for r in ROWS]
    misses = [(r["id"], r["reason"], v.parsed, v.failure)
              for r, v, ok, want in zip(ROWS, verdicts, agpo, expected) if ok != want]
    agreement = 1 - len(misses) / len(ROWS)
    plain_agreement = sum(p == e for p, e in zip(plain, expected)) / len(ROWS)
    assert agreement >= 0.98, f"agreement {agreement:.3f}; disagreements: {misses}"
    assert agreement >= plain_agreement, f"{agreement:.3f} < plain {plain_agreement:.3f}"


def test_adversarial_rows_are_never_credited(verdicts: list[RewardResult]) -> None:
    credited = [(r["id"], r["completion"], v.parsed) for r, v in zip(ROWS, verdicts)
                if r.get("class") in ADVERSARIAL and r["label"] == "wrong" and v.score > 0]
    assert credited == []


@pytest.mark.parametrize("template", [
    "{a} {op} {b}",
    "{a} {op} {b} = ",
    "The answer is {a} {op} {b}.",
    "So, the result is {a} {op} {b}.",
    "\\boxed{{{a} {tex} {b}}}",
    "The answer is ${a} {tex} {b}$.",
    "Let me compute it.\nIt is {a} {op} {b}.",
    # the expression with a blank where the result goes (SmolLM2 wrote "72 + 49 = 🔍🔍" in training)
    "{a} {op} {b} = ?",
    "{a} {op} {b} = 🔍🔍",
    "${a} {tex} {b} = ?$",
    "\\boxed{{{a} {tex} {b} = \\ldots}}",
    "{a}{op}{b}=\\text{{?}}",
    "So, {a} {op} {b} = ___.",
])
def test_restating_the_question_never_earns_a_reward(template: str) -> None:
    # Every held-out arithmetic problem: the answer "is" its own expression, which a symbolic
    # checker evaluates to the gold. workers=0: the refusal happens before any worker.
    items = load_task("arith", "test")[:64]  # sums, differences, products, word problems
    texts = []
    for it in items:
        a, op, b = re.fullmatch(r"\w+:(\d+)([-+*])(\d+)", it.meta["key"]).groups()  # type: ignore[union-attr]
        texts.append(template.format(a=a, op=op, b=b, tex={"*": "\\times"}.get(op, op)))
    with build_reward(RewardConfig(verifier="math", workers=0)) as reward:
        results = reward.batch(items, texts)
        assert [r.score for r in results] == [0.0] * len(items), texts[0]
        assert {r.failure for r in results} <= {"restated", "unevaluated", "no_answer"}


@pytest.mark.parametrize("prompt, gold, completion, failure", [
    ("What is 74 * 5?", "370", "The answer is 74 * 5.", "restated"),
    ("Tom buys 5 boxes of 6 eggs. How many eggs?", "30", "\\boxed{5 \\cdot 6}", "unevaluated"),
    ("Sara has 90 stickers and gives half away. How many are left?", "45",
     "The answer is \\boxed{\\frac{90}{2}}.", "unevaluated"),
    ("Simplify $\\sqrt{8}$.", "2\\sqrt{2}", "So it is $\\boxed{\\sqrt{8}}$.", "restated"),
    ("Sara has 89 stickers and gives away 44. How many stickers are left?", "45",
     "Sara has 89 stickers and gives away 44.", "no_answer"),
])
def test_refusals_name_their_reason(
    math_reward: RewardFn, prompt: str, gold: str, completion: str, failure: str
) -> None:
    result = math_reward(TaskItem("q", prompt, gold), completion)
    assert (result.score, result.failure) == (0.0, failure)
