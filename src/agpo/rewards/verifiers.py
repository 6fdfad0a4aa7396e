"""The verifiers, registered by name in ``VERIFIERS``.

A verifier is built from the ``RewardConfig`` and *plans* each (item, completion): cheap work
(answer extraction, exact/label/format checks, plain-number and multiple-choice fast paths) runs
in the caller's process and yields a ``RewardResult`` at once; anything needing sympy becomes a
``Pending`` job with a cache key, which ``RewardFn`` deduplicates, looks up and sends to the
worker pool.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Protocol

from agpo.errors import UserError
from agpo.registry import Registry
from agpo.rewards.config import RewardConfig
from agpo.rewards.extract import (
    box_count,
    choice_letter,
    locate_answer,
    normalise,
    plain_decimal,
    plain_rational,
    strip_math,
)
from agpo.rewards.worker import VerifierVerdict
from agpo.types import RewardResult, TaskItem

BAD_GOLD = "bad_gold"
"""The failure of an item whose gold answer cannot be parsed: a skip, never a reward."""


@dataclass(frozen=True)
class Pending:
    """Work for a worker process. ``key`` identifies the verdict in the cache; when
    ``if_gold_ok`` is set the job only checks the gold answer and the verdict becomes
    ``if_gold_ok`` once the gold parses (e.g. a response with no answer)."""

    key: tuple[str, ...]
    task: str
    args: tuple[str, ...]
    parsed: str | None
    if_gold_ok: VerifierVerdict | None = None


Plan = RewardResult | Pending


class Verifier(Protocol):
    def plan(self, item: TaskItem, completion: str) -> Plan: ...


class VerifierFactory(Protocol):
    def __call__(self, cfg: RewardConfig) -> Verifier: ...


VERIFIERS: Registry[VerifierFactory] = Registry("verifier", VerifierFactory)


def _verdict(correct: bool, parsed: str | None) -> RewardResult:
    return RewardResult(1.0 if correct else 0.0, parsed, None if correct else "wrong")


_MATH_DELIMITER = re.compile(r"(?<!\\)\$|\\\(|\\\[")  # $, \( or \[ (an escaped \$ is money)


def _alone(extractor: str, answer: str, completion: str) -> bool:
    """Whether ``answer`` is all math-verify should read: after GSM8K's '####' (a pattern
    math-verify does not know), in the only box, or an answer line / one-line response without
    math delimiters left in it (a bare answer such as ``\\frac12``, which math-verify parses
    only as a box's content). Then the exact fast paths apply and the cache key is the answer."""
    if extractor == "hash":
        return True
    if extractor == "boxed":
        return box_count(completion) == 1
    return _MATH_DELIMITER.search(answer) is None


@dataclass(frozen=True)
class MathVerifier:
    """Final answer vs gold through math-verify (gold first). Who extracts the answer:

    - math-verify, from the response itself (its LaTeX and expression extraction with their
      priorities), unless the answer stands alone: several boxes (read as one set), an answer
      line or one-line response with inline math, display math without any stated answer.
    - agpo, where it adds something: GSM8K's ``#### 42`` (a pattern math-verify does not
      know); the only box, an answer line or a one-line response without math delimiters (a
      bare answer such as ``\\frac12``), given to math-verify as a box's content, with exact
      fast paths for plain numbers and a cache key on the answer; multiple-choice letters.
    - none: prose without math and without a box, "Answer:" line or "####" is no answer
      (``no_answer``): a reward needs a stated final answer.

    Policies, chosen to follow math-verify where it has one:

    - gold: bare LaTeX, ``$`` optional; ``1,000`` / ``1{,}000`` is one thousand (a comma between
      groups of exactly three digits is a thousands separator, never a list); ``025`` is 25;
      ``27.0`` is 27; an upper-case letter A–E (or ``(C)``, ``\\text{(C)}``) is a multiple-choice
      letter, matched against the letter the response gives.
    - percentages: ``50\\%`` accepts ``50``, ``50\\%`` and ``0.5`` (math-verify's rule).
    - units and ``^\\circ``: dropped on both sides (``5\\text{ cm}`` ≡ ``5``).
    - lists: a bare comma list is a set, order-free (``1, 2`` ≡ ``2, 1``); parentheses make an
      ordered tuple or an open interval, brackets a closed interval (``[1,3]`` ≢ ``(1,3)``).
    - equations: gold ``x = 2`` accepts ``2``; an interval gold accepts the inequality.
    """

    cfg: RewardConfig

    def plan(self, item: TaskItem, completion: str) -> Plan:
        gold = strip_math(item.gold)
        if not gold:
            return RewardResult(0.0, None, BAD_GOLD)
        located = locate_answer(completion, self.cfg.extract_order, self.cfg.max_answer_chars)
        if located is None:  # no box, no answer line, no '####', not one line
            if _MATH_DELIMITER.search(completion):  # math-verify reads its LaTeX
                text = completion[-self.cfg.max_response_chars :]
                return Pending(("math_text", gold, text), "math_text", (gold, text), None)
            return self._gold_only(gold, None, "no_answer")  # prose without math: none stated
        extractor, answer = located
        letter = choice_letter(gold)
        if letter is not None:
            return _verdict(choice_letter(answer) == letter, answer[: self.cfg.max_answer_chars])
        if not _alone(extractor, answer, completion):
            # math-verify extracts from the response itself (several boxes form one set; a
            # sentence with inline math is read for its expression or relation).
            text = completion[-self.cfg.max_response_chars :]
            return Pending(("math_text", gold, text), "math_text", (gold, text), answer)
        if len(answer) > self.cfg.max_answer_chars:
            return self._gold_only(gold, answer[: self.cfg.max_answer_chars], "too_long")
        for exact_value in (plain_decimal, plain_rational):
            gold_value, value = exact_value(gold), exact_value(answer)
            if gold_value is not None and value is not None:
                return _verdict(gold_value == value, answer)
        return Pending(("math", gold, normalise(answer)), "math", (gold, answer), answer)

    def _gold_only(self, gold: str, parsed: str | None, failure: str) -> Plan:
        if any(f(gold) is not None for f in (choice_letter, plain_decimal, plain_rational)):
            return RewardResult(0.0, parsed, failure)
        return Pending(("gold", gold), "gold", (gold,), parsed, if_gold_ok=(0.0, failure))


@dataclass(frozen=True)
class ExactVerifier:
    """Stripped exact string match, in-process (the built-in testbed's verifier).

    With an answer pattern (``cfg.exact_pattern``, else the item's ``meta["exact_pattern"]``)
    only the answer it locates is compared: the last match's group 1 (whole match without a
    group), stripped. E.g. pattern ``\\|([0-9]+)\\s*$`` on ``" 3+4=7,5+2=7,1+1=2|772"``
    parses ``"772"``; a completion without a match scores 0 with failure ``"no_answer"``.
    The task's pattern lets ``agpo eval`` (verifier from meta) and ``agpo train
    --reward.verifier exact`` grade a worked-steps task without extra flags.
    """

    cfg: RewardConfig

    def plan(self, item: TaskItem, completion: str) -> Plan:
        gold = item.gold.strip()
        if not gold:
            return RewardResult(0.0, None, BAD_GOLD)
        pattern = self.cfg.exact_pattern or item.meta.get("exact_pattern") or ""
        if not pattern:
            answer = completion.strip()
            return _verdict(answer == gold, answer[: self.cfg.max_answer_chars])
        last = None
        try:
            regex = _compile(pattern)
        except re.error as e:
            raise UserError(f"item {item.id!r}: exact pattern {pattern!r} is not a regex ({e})") from None
        for last in regex.finditer(completion):
            pass
        if last is None:
            return RewardResult(0.0, None, "no_answer")
        answer = (last.group(1) if last.re.groups else last.group(0)) or ""
        answer = answer.strip()
        return _verdict(answer == gold, answer[: self.cfg.max_answer_chars])


@functools.lru_cache(maxsize=64)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True)
class LabelVerifier:
    """One label of ``cfg.labels`` parsed from free text with ``cfg.label_pattern`` (the last
    match; a response that is exactly one label counts too). Matching ignores case; the parsed
    label is returned in its configured spelling.

    Reward 'exact': 1 or 0. Reward 'ordinal' over K labels in their configured order:
    1 − |i_pred − i_gold| / (K − 1); e.g. labels 1..5, gold 4, predicted 2 → 1 − 2/4 = 0.5.
    """

    cfg: RewardConfig

    def plan(self, item: TaskItem, completion: str) -> Plan:
        index = {lab.lower(): i for i, lab in enumerate(self.cfg.labels)}
        gold = index.get(item.gold.strip().lower())
        if gold is None:
            return RewardResult(0.0, None, BAD_GOLD)
        pred = self._parse(completion, index)
        if pred is None:
            return RewardResult(0.0, None, "no_answer")
        parsed = self.cfg.labels[pred]
        if self.cfg.label_reward == "exact" or pred == gold:
            return _verdict(pred == gold, parsed)
        return RewardResult(1.0 - abs(pred - gold) / (len(self.cfg.labels) - 1), parsed, "wrong")

    def _parse(self, completion: str, index: dict[str, int]) -> int | None:
        whole = strip_math(completion).strip("*()[]. ").lower()
        if whole in index:
            return index[whole]
        last = None
        for last in self.cfg.label_regex.finditer(completion):
            pass
        return None if last is None else index.get(last.group(1).lower())


@dataclass(frozen=True)
class FormatVerifier:
    """A required output template: reasoning (≥ 1 non-empty line, if required), then a final
    line that starts with one of ``cfg.format_prefixes`` (for ``\\boxed{``: contains it), and
    ``cfg.format_pattern`` found when set. Scores 1 or 0; the gold answer is not used."""

    cfg: RewardConfig

    def plan(self, item: TaskItem, completion: str) -> Plan:
        lines = [line.strip() for line in completion.strip().split("\n") if line.strip()]
        if not lines:
            return RewardResult(0.0, None, "format")
        last = lines[-1]
        ok = any(
            p in last if p.startswith("\\boxed") else last.startswith(p)
            for p in self.cfg.format_prefixes
        )
        ok = ok and (len(lines) > 1 or not self.cfg.format_require_reasoning)
        if ok and self.cfg.format_pattern:
            ok = re.search(self.cfg.format_pattern, completion) is not None
        return RewardResult(1.0 if ok else 0.0, last[:200], None if ok else "format")


VERIFIERS.register("math")(MathVerifier)
VERIFIERS.register("exact")(ExactVerifier)
VERIFIERS.register("label")(LabelVerifier)
VERIFIERS.register("format")(FormatVerifier)
