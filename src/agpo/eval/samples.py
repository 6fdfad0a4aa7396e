"""samples.jsonl: one row per sample, appended as produced, read back crash-tolerantly.

Row: ``problem_id``, ``sample`` (index 0..n-1), ``completion``, ``parsed``, ``correct``,
``score``, ``failure``, ``length`` (response tokens, EOS included), ``truncated``, ``nll`` (mean
−log π_τ of the sampled tokens: a Monte Carlo estimate of the token entropy at the sampling
temperature, exact in expectation when top_p = 1).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agpo.errors import at
from agpo.io import read_jsonl

SAMPLES = "samples.jsonl"
REQUIRED = ("problem_id", "sample", "correct")


def repair_tail(path: Path) -> None:
    """Cut a partial last line left by a killed writer, so appends start on a fresh line."""
    if not path.exists():
        return
    with path.open("rb+") as f:
        data = f.read()
        cut = data.rfind(b"\n") + 1
        if cut != len(data):
            f.truncate(cut)


def iter_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete row of a samples file (a torn last line from a killed run is skipped)."""
    for lineno, row in read_jsonl(path, skip_torn_tail=True):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise at(path, lineno, f"field {missing[0]!r}: missing (a samples row needs "
                                   f"{', '.join(REQUIRED)})")
        yield row


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows in one write and flush, so a kill loses at most the batch being written."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with path.open("a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
