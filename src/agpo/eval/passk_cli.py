"""``agpo passk``: the pass@k table of any samples file (one JSON row per sample).

Rows need ``problem_id`` and either ``correct`` (bool) or ``score`` (number; correct iff
score ≥ --threshold). Rows may come in any order. k runs over 1, 2, 4, … up to the smallest
number of samples any problem has (plus that number when it is not a power of two). The numbers
are ``agpo eval``'s (one summary, ``agpo.eval.summary``): rows with failure ``bad_gold`` are left
out and their problems reported as skipped. A row that repeats an earlier row of its
(problem_id, sample) is counted once, and stderr says so. Imports no torch, so it starts fast.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from agpo.errors import UserError, at
from agpo.eval.samples import SampleKeys, check_row
from agpo.eval.summary import BAD_GOLD, ProblemTally, summarize, tally
from agpo.io import dumps_finite, iter_jsonl


@dataclass(frozen=True)
class PasskArgs:
    """pass@k per k, averaged over problems, from a samples.jsonl file."""

    in_: Annotated[Path, tyro.conf.arg(name="in")]
    """Samples file (JSON lines with problem_id and correct or score); '-' reads stdin."""
    json: bool = False
    """Print one JSON object ("pass@K" keys, "problems", ...) instead of a table."""
    threshold: float = 1.0
    """Rows with a numeric score count as correct iff score ≥ threshold."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.threshold):
            raise UserError(f"--threshold {self.threshold}: give a finite number")


def tally_lines(lines: Iterable[str], path: object, threshold: float = 1.0) -> dict[str, ProblemTally]:
    """Per-problem tallies of a samples stream (``agpo.eval.summary``); blank lines are skipped,
    a bad row is a UserError naming file, line and field. A row repeating an earlier one of the
    same (problem_id, sample) is counted once, and stderr says how many were left out
    (``agpo.eval.samples.SampleKeys``; one with other content is an error)."""
    tallies: dict[str, ProblemTally] = {}
    keys = SampleKeys(path)
    for lineno, row in iter_jsonl(lines, path):
        row = check_row(row, path, lineno, threshold)
        if keys.admit(row, lineno):
            tally([row], into=tallies)
    if not tallies:
        raise at(path, None, "no samples (the file is empty)")
    if not any(t.n for t in tallies.values()):
        raise at(path, None, f"all {len(tallies)} problems were skipped (failure {BAD_GOLD!r}: "
                             "their gold answer is unusable); no pass@k")
    if (note := keys.note()) is not None:
        print(f"warning: {note}", file=sys.stderr)
    return tallies


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
    skipped = summary["skipped_problems"]
    console.print(
        f"{summary['num_problems']} problems, {summary['num_samples']} samples; avg@n "
        f"{summary['avg@n']:.4f}, coverage {summary['coverage']:.4f}; k is limited to "
        f"{summary['n']} by problem {summary['limited_by']!r}"
        + (f"; {skipped} problem(s) skipped (unusable gold answer)" if skipped else "")
    )


def main(argv: list[str]) -> int:
    args = tyro.cli(PasskArgs, args=argv, prog="agpo passk")
    if str(args.in_) == "-":
        tallies = tally_lines(sys.stdin, "<stdin>", args.threshold)
    else:
        if not args.in_.is_file():
            raise at(args.in_, None, "is a directory; give a samples file (e.g. DIR/samples.jsonl)"
                     if args.in_.is_dir() else "no such file")
        with args.in_.open(encoding="utf-8") as f:
            tallies = tally_lines(f, args.in_, args.threshold)
    summary = summarize(tallies)
    if args.json:
        print(dumps_finite(summary))
    else:
        _print_table(summary, str(args.in_))
    return 0
