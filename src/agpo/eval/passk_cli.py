"""``agpo passk``: the pass@k table of any samples file (one JSON row per sample).

Rows need ``problem_id`` and either ``correct`` (bool) or ``score`` (number; correct iff
score ≥ --threshold). Rows may come in any order. k runs over 1, 2, 4, … up to the smallest
number of samples any problem has (plus that number when it is not a power of two).
Imports no torch, so it starts fast.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from agpo.errors import at
from agpo.eval.passk import avg_at_n, coverage, pass_at_k_curve, report_ks
from agpo.io import iter_jsonl


@dataclass(frozen=True)
class PasskArgs:
    """pass@k per k, averaged over problems, from a samples.jsonl file."""

    in_: Annotated[Path, tyro.conf.arg(name="in")]
    """Samples file (JSON lines with problem_id and correct or score); '-' reads stdin."""
    json: bool = False
    """Print one JSON object ("pass@K" keys, "problems", ...) instead of a table."""
    threshold: float = 1.0
    """Rows with a numeric score count as correct iff score ≥ threshold."""


@dataclass
class Tally:
    """Samples and correct samples per problem, in first-seen order."""

    n: dict[str, int]
    c: dict[str, int]


def _parse_row(
    row: dict[str, Any], path: object, lineno: int, threshold: float
) -> tuple[str, bool]:
    pid = row.get("problem_id")
    if pid is None:
        raise at(path, lineno, "problem_id: missing")
    if isinstance(pid, bool) or not isinstance(pid, (str, int)):
        raise at(path, lineno, f"problem_id: expected a string or integer, got {pid!r}")
    if "correct" in row:
        ok = row["correct"]
        if not isinstance(ok, bool):
            raise at(path, lineno, f"correct: expected true or false, got {ok!r}")
        return str(pid), ok
    if "score" in row:
        score = row["score"]
        if (
            isinstance(score, bool)
            or not isinstance(score, (int, float))
            or not math.isfinite(score)
        ):
            raise at(path, lineno, f"score: expected a finite number, got {score!r}")
        return str(pid), score >= threshold
    raise at(path, lineno, "correct: missing (give correct (bool) or score (number))")


def tally(lines: Iterable[str], path: object, threshold: float = 1.0) -> Tally:
    """Count samples and correct ones per problem; blank lines are skipped."""
    n: dict[str, int] = {}
    c: dict[str, int] = {}
    for lineno, row in iter_jsonl(lines, path):
        pid, ok = _parse_row(row, path, lineno, threshold)
        n[pid] = n.get(pid, 0) + 1
        c[pid] = c.get(pid, 0) + int(ok)
    if not n:
        raise at(path, None, "no samples (the file is empty)")
    return Tally(n, c)


def summarize(t: Tally) -> dict[str, Any]:
    """pass@k for the reported ks, avg@n, coverage and which problem limits k."""
    limiting = min(t.n, key=lambda pid: t.n[pid])
    n_min = t.n[limiting]
    ns, cs = list(t.n.values()), [t.c[pid] for pid in t.n]
    curve = pass_at_k_curve(ns, cs, report_ks(n_min))
    return {
        **{f"pass@{k}": v for k, v in curve.items()},
        "problems": len(ns),
        "samples": sum(ns),
        "min_samples": n_min,
        "limited_by": limiting,
        "avg@n": avg_at_n(ns, cs),
        "coverage": coverage(cs),
    }


def _print_table(summary: dict[str, Any], source: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"pass@k — {source}")
    table.add_column("k", justify="right")
    table.add_column("pass@k", justify="right")
    for key, value in summary.items():
        if key.startswith("pass@"):
            table.add_row(key[5:], f"{value:.4f}")
    console = Console()
    console.print(table)
    console.print(
        f"{summary['problems']} problems, {summary['samples']} samples; avg@n "
        f"{summary['avg@n']:.4f}, coverage {summary['coverage']:.4f}; k is limited to "
        f"{summary['min_samples']} by problem {summary['limited_by']!r}"
    )


def main(argv: list[str]) -> int:
    args = tyro.cli(PasskArgs, args=argv, prog="agpo passk")
    if str(args.in_) == "-":
        t = tally(sys.stdin, "<stdin>", args.threshold)
    else:
        if not args.in_.is_file():
            raise at(args.in_, None, "no such file")
        with args.in_.open(encoding="utf-8") as f:
            t = tally(f, args.in_, args.threshold)
    summary = summarize(t)
    if args.json:
        print(json.dumps(summary))
    else:
        _print_table(summary, str(args.in_))
    return 0
