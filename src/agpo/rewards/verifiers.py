"""The verifiers, registered by name in ``VERIFIERS``.

A verifier is built from the ``RewardConfig`` and *plans* each (item, completion): cheap work
(answer extraction, exact/label/format checks, plain-number and multiple-choice fast paths) runs
in the caller's process and yields a ``RewardResult`` at once; anything needing sympy becomes a
``Pending`` job with a cache key, which ``RewardFn`` deduplicates, looks up and sends to the
worker pool.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import regex

from agpo.errors import UserError
from agpo.registry import Registry
from agpo.rewards.config import RewardConfig
from agpo.rewards.extract import (
    box_count,
    choice_letter,
    has_latex,
    locate_answer,
    math_delimited,
    normalise,
    plain_decimal,
    plain_rational,
    strip_math,
    unearned,
)
from agpo.types import RewardResult, TaskItem

BAD_GOLD = "bad_gold"
"""The failure of an item whose gold answer cannot be parsed: a skip, never a reward."""


@dataclass(frozen=True)
class Pending:
    """Work for a worker process. ``key`` identifies the verdict in the cache; when
    ``if_gold_ok`` is set the job only checks the gold answer and the verdict becomes
    ``if_gold_ok`` once the gold parses (e.g. a response with no answer). ``guard`` judges
    the answer the worker read from a whole response: a failure name voids the verdict."""

    key: tuple[str, ...]
    task: str
    args: tuple[str, ...]
    parsed: str | None
    if_gold_ok: tuple[float, str] | None = None
    guard: Callable[[str], str | None] | None = field(default=None, compare=False)


Plan = RewardResult | Pending


class Verifier(Protocol):
    def plan(self, item: TaskItem, completion: str) -> Plan: ...


class VerifierFactory(Protocol):
    def __call__(self, cfg: RewardConfig) -> Verifier: ...


VERIFIERS: Registry[VerifierFactory] = Registry("verifier", VerifierFactory)


def _verdict(correct: bool, parsed: str | None) -> RewardResult:
    return RewardResult(1.0 if correct else 0.0, parsed, None if correct else "wrong")


def _alone(extractor: str, answer: str, completion: str) -> bool:
    """Whether ``answer`` is all math-verify should read: after GSM8K's '####' (a pattern
    math-verify does not know), in the only box, or a statement without math delimiters left
    in it (agpo's reading of plain text, or a bare answer such as ``\\frac12``, which
    math-verify parses only as a box's content). Then the exact fast paths apply and the cache
    key is the answer."""
    if extractor == "hash":
        return True
    if extractor == "boxed":
        return box_count(completion) == 1
    if extractor == "final":  # a sentence: agpo's reading when plain, else math-verify's
        return not has_latex(answer)
    return not math_delimited(answer)


@dataclass(frozen=True)
class MathVerifier:
    """Final answer vs gold through math-verify (gold first), by the grading policy of
    docs/grading.md: which statement of a response is its answer, what is never credited
    (an expression copied from the prompt; an unevaluated expression where the gold is a
    number), and the failure names.

    Who reads the answer:

    - agpo (``agpo.rewards.extract``), in-process: the only box, GSM8K's ``#### 42`` (a pattern
      math-verify does not know), "the answer is" statements, and statements in plain text
      ("So, Sara has 89 - 44 = 45 stickers left." states 45), which math-verify reads by
      position alone (its last number); multiple-choice letters. Plain numbers are compared
      exactly in-process; other answers go to math-verify as a box's content.
    - math-verify, from the response itself (its LaTeX and expression extraction with their
      priorities): several boxes (one set), statements with inline or display math. What it
      extracted meets the same never-credit checks.
    """

    cfg: RewardConfig

    def plan(self, item: TaskItem, completion: str) -> Plan:
        gold = strip_math(item.gold)
        if not gold:
            return RewardResult(0.0, None, BAD_GOLD)
        located = locate_answer(completion, self.cfg.extract_order, self.cfg.max_answer_chars,
                                item.prompt)
        if located is None:  # no box, no answer line, no '####', no statement of a number
            if math_delimited(completion):  # math-verify reads its LaTeX
                return self._read_by_math_verify(item, gold, completion)
            return self._gold_only(gold, None, "no_answer")
        extractor, answer = located
        letter = choice_letter(gold)
        if letter is not None:
            return _verdict(choice_letter(answer) == letter, answer[: self.cfg.max_answer_chars])
        if not _alone(extractor, answer, completion):
            # math-verify extracts from the response itself (several boxes form one set; a
            # sentence with inline math is read for its expression or relation).
            return self._read_by_math_verify(item, gold, completion)
        if len(answer) > self.cfg.max_answer_chars:
            return self._gold_only(gold, answer[: self.cfg.max_answer_chars], "too_long")
        failure = unearned(answer, gold, item.prompt)
        if failure is not None:
            return self._gold_only(gold, answer, failure)
        for exact_value in (plain_decimal, plain_rational):
            gold_value, value = exact_value(gold), exact_value(answer)
            if gold_value is not None and value is not None:
                return _verdict(gold_value == value, answer)
        return Pending(("math", gold, normalise(answer)), "math", (gold, answer), answer)

    def _read_by_math_verify(self, item: TaskItem, gold: str, completion: str) -> Pending:
        text = completion[-self.cfg.max_response_chars :]
        guard = functools.partial(unearned, gold=gold, prompt=item.prompt)
        return Pending(("math_text", gold, text), "math_text", (gold, text), None, guard=guard)

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

    A task file is untrusted input and a pattern may backtrack catastrophically (``(a|aa)+$``
    on a run of a's ending in b: each further a multiplies the work by 1.6), so the search runs
    under the item deadline (see ``last_match``) and one past it scores 0 with failure
    ``"timeout"``.
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
        try:
            compiled = compile_pattern(pattern)
        except (regex.error, RecursionError, OverflowError) as e:
            raise UserError(f"item {item.id!r}: exact pattern {pattern!r} is not a regex ({e})") from None
        try:
            last = last_match(compiled, completion, self.cfg.timeout_s)
        except TimeoutError:
            return RewardResult(0.0, None, "timeout")
        if last is None:
            return RewardResult(0.0, None, "no_answer")
        answer = (last.group(1) if last.re.groups else last.group(0)) or ""
        answer = answer.strip()
        return _verdict(answer == gold, answer[: self.cfg.max_answer_chars])


@functools.lru_cache(maxsize=64)
def compile_pattern(pattern: str) -> regex.Pattern[str]:
    """``pattern`` compiled by the ``regex`` engine (the syntax of ``re``), cached."""
    return regex.compile(pattern)


def last_match(pattern: regex.Pattern[str], text: str, timeout_s: float) -> regex.Match[str] | None:
    """The last match of ``pattern`` in ``text``; TimeoutError past ``timeout_s``.

    ``re`` cannot be stopped once it matches (its C loop never returns to Python, and a worker's
    SIGALRM is never seen); the ``regex`` engine checks its deadline while it backtracks. That
    deadline counts the process's CPU seconds, not wall seconds: on a loaded machine it ends
    later than the clock says, and a busy multi-threaded caller reaches it sooner, never for a
    pattern that finishes in milliseconds.
    """
    last = None
    for last in pattern.finditer(text, timeout=timeout_s, concurrent=True):
        pass
    return last


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
        try:
            pred = self._parse(completion, index)
        except TimeoutError:  # a --reward.label-pattern that backtracks on this completion
            return RewardResult(0.0, None, "timeout")
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
        last = last_match(self.cfg.label_regex, completion, self.cfg.timeout_s)
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
            try:
                ok = compile_pattern(self.cfg.format_pattern).search(
                    completion, timeout=self.cfg.timeout_s, concurrent=True) is not None
            except TimeoutError:
                return RewardResult(0.0, last[:200], "timeout")
        return RewardResult(1.0 if ok else 0.0, last[:200], None if ok else "format")


VERIFIERS.register("math")(MathVerifier)
VERIFIERS.register("exact")(ExactVerifier)
VERIFIERS.register("label")(LabelVerifier)
VERIFIERS.register("format")(FormatVerifier)
