"""``agpo report DIR... [--out report.html]``: one self-contained HTML page over eval and run
directories (pass@k curves with bootstrap intervals, tables, training curves, samples)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro


@dataclass(frozen=True)
class ReportArgs:
    """HTML report over eval directories (agpo eval --out) and run directories (agpo train)."""

    dirs: Annotated[tuple[Path, ...], tyro.conf.Positional]
    """Eval and/or run directories; evals of the same task share one pass@k plot."""
    out: Path = Path("report.html")
    """The HTML file to write (self-contained: plots are embedded). An existing file is
    replaced only when it is a report agpo wrote; never a directory or any other file."""


def main(argv: list[str]) -> int:
    from agpo.errors import UserError
    from agpo.eval.report import build_report

    args = tyro.cli(ReportArgs, args=argv, prog="agpo report")
    if not args.dirs:
        raise UserError("agpo report: give at least one eval or run directory")
    path = build_report(args.dirs, args.out)
    print(f"wrote {path}")
    return 0
