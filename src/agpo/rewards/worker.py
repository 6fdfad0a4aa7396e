"""What runs inside a verification worker process (or in the main thread when workers = 0).

Run as ``python -m agpo.rewards.worker``: it imports math-verify and sympy but never torch. Tasks
are looked up by name in ``TASKS``; their arguments are plain strings and their results
``(score, failure)`` tuples, exchanged as JSON lines — nothing is pickled, nothing from model
output is evaluated.

math-verify's own timeouts use ``signal.alarm`` (main thread only); here they are switched off
and one ``setitimer`` deadline covers the whole item instead. A computation stuck in C code
(``2^{2^{2^{100}}}``) does not see that signal; the parent kills the worker for those.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import lru_cache
from typing import IO

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

VerifierVerdict = tuple[float, "str | None", "str | None"]
"""A verifier's (score, failure reason, answer read) for one item: the reason is None when it
verified; the answer read is what math-verify extracted from a whole response (None when the
caller gave it the answer)."""

_BOXED = [LatexExtractionConfig(boxed_match_priority=0)]
_ANY = [LatexExtractionConfig(), ExprExtractionConfig()]

# math-verify warns once that its timeouts are off; that is deliberate here (see module doc).
logging.getLogger("math_verify").setLevel(logging.ERROR)


class Deadline(BaseException):
    """Raised by the item deadline's signal. A BaseException so that the ``except Exception``
    blocks inside math-verify and sympy cannot swallow it."""


def parse_math(latex: str) -> list[object]:
    """math-verify's parse of a bare answer: as the content of ``\\boxed{}`` first, then as
    free text (latex environments or plain expressions). Only parsed sympy objects and the
    normalised string math-verify attaches to them are returned."""
    parsed = parse("\\boxed{" + latex + "}", _BOXED, parsing_timeout=None)  # type: ignore[arg-type]
    if not any(not isinstance(p, str) for p in parsed):
        parsed = parse(latex, _ANY, parsing_timeout=None)  # type: ignore[arg-type]
    return parsed if any(not isinstance(p, str) for p in parsed) else []


@lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> tuple[object, ...]:
    # One problem's samples bring the same gold several times; sympy objects are immutable.
    return tuple(parse_math(gold))


def math_verdict(gold: str, answer: str) -> VerifierVerdict:
    """Compare ``answer`` with ``gold`` through math-verify, gold first (its comparison is
    asymmetric on purpose: a gold ``x = 2`` accepts ``2``, a gold interval accepts an
    inequality)."""
    gold_parsed = list(_parse_gold(gold))
    if not gold_parsed:
        return 0.0, "bad_gold", None
    pred_parsed = parse_math(answer)
    if not pred_parsed:
        return 0.0, "unparsed", None
    if verify(gold_parsed, pred_parsed, timeout_seconds=None):  # type: ignore[arg-type]
        return 1.0, None, None
    return 0.0, "wrong", None


def math_text_verdict(gold: str, response: str) -> VerifierVerdict:
    """``math_verdict`` with math-verify's own extraction over a whole response (its LaTeX and
    expression configs and their priorities: boxed answers, several boxes as one set, "final
    answer is", the last expression); (0, 'no_answer') when it finds none. The answer read is
    the text math-verify extracted, which the caller checks against agpo's policy."""
    gold_parsed = list(_parse_gold(gold))
    if not gold_parsed:
        return 0.0, "bad_gold", None
    pred_parsed = parse(response, _ANY, parsing_timeout=None)  # type: ignore[arg-type]
    if not any(not isinstance(p, str) for p in pred_parsed):
        return 0.0, "no_answer", None
    read = next((p for p in pred_parsed if isinstance(p, str)), None)
    if verify(gold_parsed, pred_parsed, timeout_seconds=None):  # type: ignore[arg-type]
        return 1.0, None, read
    return 0.0, "wrong", read


def gold_check(gold: str) -> VerifierVerdict:
    """(1, None) when ``gold`` parses, (0, 'bad_gold') when it does not."""
    return (1.0, None, None) if _parse_gold(gold) else (0.0, "bad_gold", None)


def _sleep(seconds: str) -> VerifierVerdict:
    """Self-test: a worker stuck in C code (time.sleep with signals blocked)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(float(seconds))
    return 1.0, None, None


def _exit(code: str) -> VerifierVerdict:
    """Self-test: a worker that dies mid-item."""
    os._exit(int(code))


TASKS: dict[str, Callable[..., VerifierVerdict]] = {
    "math": math_verdict,
    "math_text": math_text_verdict,
    "gold": gold_check,
    "selftest_sleep": _sleep,
    "selftest_exit": _exit,
}


def run_task(task: str, args: tuple[str, ...], timeout_s: float) -> VerifierVerdict:
    """Run one task under a ``setitimer`` deadline (call from a main thread only).

    Errors inside math-verify/sympy are a verdict ('error'), not a crash of the caller.
    """
    fn = TASKS[task]

    def on_deadline(signum: int, frame: object) -> None:
        raise Deadline

    previous = signal.signal(signal.SIGALRM, on_deadline)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return fn(*args)
    except Deadline:
        return 0.0, "timeout", None
    except (Exception, RecursionError):
        return 0.0, "error", None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def serve(stdin: IO[str], stdout: IO[str]) -> None:
    """Worker main loop over JSON lines: ``ready`` first, then ``[job_id, task, args, timeout_s]``
    in, ``[job_id, score, failure, read]`` out; end of input ends it. JSON, not pickle: the parent
    never unpickles anything a worker (which parses model output) produced."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    stdout.write("ready\n")  # imports done: the parent starts item deadlines from here
    stdout.flush()
    for line in stdin:
        job_id, task, args, timeout_s = json.loads(line)
        try:
            score, failure, read = run_task(task, tuple(args), timeout_s)
        except Deadline:  # fired between the task's return and the timer's reset
            score, failure, read = 0.0, "timeout", None
        stdout.write(json.dumps([job_id, score, failure, read]) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
