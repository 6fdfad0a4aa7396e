"""A check on the reward from outside the grader: does a credited response write its gold?

Where the gold is a plain number, a response a person credits writes that number somewhere. One
the verifier credited without writing it earned its reward some other way, which is what a
reward hack looks like: SmolLM2 was rewarded for "72 + 49 = 🔍🔍" (gold 121) before the blank
rule of docs/grading.md. Training logs the share of such responses as
``reward/credited_without_gold``; above 0 it is worth reading the samples. It is an audit, not a
grade: a correct answer written another way ('1/2' for 0.5, '10^3' for 1000) is counted too.
"""

from __future__ import annotations

from collections.abc import Sequence

from agpo.rewards.extract import numbers_in, plain_decimal


def writes_gold(completion: str, gold: str) -> bool | None:
    """Whether ``completion`` writes the gold number anywhere ('$1,000' writes 1000, '18.00'
    writes 18); None when the gold is not a plain number (the audit does not apply)."""
    value = plain_decimal(gold)
    return None if value is None else value in numbers_in(completion)


def credited_without_gold(golds: Sequence[str], completions: Sequence[str],
                          scores: Sequence[float]) -> tuple[int, int]:
    """(credited responses that never write their gold, credited responses whose gold is a
    plain number): ``scores`` > 0 is credited; the three sequences are aligned, one per response."""
    unwritten = audited = 0
    for gold, text, score in zip(golds, completions, scores, strict=True):
        if score > 0 and (written := writes_gold(text, gold)) is not None:
            audited += 1
            unwritten += not written
    return unwritten, audited
