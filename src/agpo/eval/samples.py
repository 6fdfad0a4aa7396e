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
from agpo.io import dumps_finite, is_finite_number, naming, read_jsonl

SAMPLES = "samples.jsonl"
PROBLEMS = "problems.jsonl"
"""Beside samples.jsonl in an eval directory: the problems as the eval saw them (id, prompt,
gold, meta), one JSON object per line."""
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


def iter_rows(path: Path, keys: SampleKeys | None = None) -> Iterator[dict[str, Any]]:
    """Every complete row of a samples file, checked by ``check_row`` (a torn last line from a
    killed run is skipped); with ``keys``, a row that repeats an earlier one is left out
    (see ``SampleKeys``)."""
    for lineno, row in read_jsonl(path, skip_torn_tail=True):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise at(path, lineno, f"field {missing[0]!r}: missing (a samples row needs "
                                   f"{', '.join(REQUIRED)})")
        row = check_row(row, path, lineno)
        if keys is None or keys.admit(row, lineno):
            yield row


class SampleKeys:
    """Counts each (problem_id, sample) once. A file appended to twice, or two copies of one
    file concatenated, repeats rows: counting them would add samples that were never drawn
    (four copies of one row make n = 4 of one sample). A row identical to an earlier row of the
    same (problem_id, sample) is left out and counted in ``note``; one with other content is an
    error (two different samples cannot share an index: which one counts is not ours to
    guess). Rows without ``sample`` have no identity to compare and are all counted.
    Keeps a line number and a hash per sample, not the rows."""

    def __init__(self, path: object) -> None:
        self.path = path
        self.seen: dict[tuple[str, int], tuple[int, int]] = {}
        self.dropped = 0
        self.first_dropped: int | None = None

    def admit(self, row: dict[str, Any], lineno: int) -> bool:
        """Whether ``row`` (checked by ``check_row``) is new, else a UserError if it
        contradicts the earlier row of its (problem_id, sample)."""
        if row.get("sample") is None:
            return True
        key = (str(row["problem_id"]), int(row["sample"]))
        try:
            digest = hash(frozenset(row.items()))  # 8x cheaper than serialising the row
        except TypeError:  # a list or object among the values
            digest = hash(json.dumps(row, sort_keys=True))
        first = self.seen.setdefault(key, (lineno, digest))
        if first[0] == lineno:
            return True
        if first[1] != digest:
            raise at(self.path, lineno, f"sample: problem {key[0]!r} sample {key[1]} is already "
                                        f"on line {first[0]}, with other content; a samples "
                                        "file holds each (problem_id, sample) once (renumber "
                                        "'sample' if both are real samples)")
        self.dropped += 1
        self.first_dropped = self.first_dropped or lineno
        return False

    def note(self) -> str | None:
        """The line to print when rows were left out, else None."""
        if not self.dropped:
            return None
        return (f"{self.path}: {self.dropped} row(s) repeat an earlier row of the same "
                f"(problem_id, sample) exactly (the first on line {self.first_dropped}); "
                "each sample is counted once")


def check_row(
    row: dict[str, Any], path: object, lineno: int, threshold: float | None = None,
) -> dict[str, Any]:
    """A samples row whose fields have the types the summary and the report read, else a
    UserError naming file, line and field. Required: ``problem_id`` (string or integer) and
    ``correct`` (bool) or, with ``threshold``, a numeric ``score`` (correct iff ≥ threshold,
    filled in). Optional, checked when present: ``sample``, ``length`` (integers ≥ 0),
    ``score``, ``nll`` (finite numbers or null), ``parsed``, ``failure`` (strings or null).
    """
    pid = row.get("problem_id")
    if pid is None:
        raise at(path, lineno, "problem_id: missing")
    if isinstance(pid, bool) or not isinstance(pid, str | int):
        raise at(path, lineno, f"problem_id: expected a string or integer, got {_shown(pid)}")
    for key in ("score", "nll"):
        if row.get(key) is not None and not is_finite_number(row[key]):
            raise at(path, lineno, f"{key}: expected a finite number, got {_shown(row[key])}")
    for key in ("sample", "length"):
        value = row.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise at(path, lineno, f"{key}: expected an integer ≥ 0, got {_shown(value)}")
    if row.get("failure") is not None and not isinstance(row["failure"], str):
        raise at(path, lineno, f"failure: expected a string or null, got {_shown(row['failure'])}")
    if "correct" in row:
        if not isinstance(row["correct"], bool):
            raise at(path, lineno, f"correct: expected true or false, got {_shown(row['correct'])}")
        return row
    if threshold is not None and row.get("score") is not None:
        return {**row, "correct": row["score"] >= threshold}
    raise at(path, lineno, "correct: missing (give correct (bool) or score (number))")


def _shown(x: Any) -> str:
    return json.dumps(x)[:40]


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows in one write and flush, so a kill loses at most the batch being written.
    A NaN (an ``nll`` of a degenerate distribution) is written as null, never as bare NaN."""
    text = "".join(dumps_finite(r, ensure_ascii=False) + "\n" for r in rows)
    with naming(path), path.open("a", encoding="utf-8") as f:
        f.write(text)
        f.flush()


def read_problems(eval_dir: Path) -> dict[str, dict[str, Any]]:
    """id → record of an eval directory's problems.jsonl ({} without one). A line torn by a
    killed writer ends the file: what is complete is returned."""
    path = eval_dir / PROBLEMS
    if not path.exists():
        return {}
    return {str(rec.get("id")): rec for _, rec in read_jsonl(path, skip_torn_tail=True)}


def golds_of(problems: dict[str, dict[str, Any]]) -> dict[str, str]:
    """id → gold answer of the records that have one (for the audit of ``agpo.eval.summary``)."""
    return {pid: str(rec["gold"]) for pid, rec in problems.items() if rec.get("gold") is not None}
