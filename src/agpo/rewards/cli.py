"""``agpo verify --task math --in pairs.jsonl``: one verdict row per (gold, pred) row, in order.

Input rows are JSON objects with ``gold`` (string; numbers are accepted as written) and ``pred``
(a bare answer or a full response); an optional ``prompt`` (the question) lets the verifier read
the question's noun and refuse an answer that copies its expression (docs/grading.md); an
``id`` field is copied through. Output rows: ``{"score": 1.0, "parsed": "25", "failure": null}``.
``-`` means stdin / stdout.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Annotated, Any

import tyro

from agpo.errors import UserError, at
from agpo.io import iter_jsonl
from agpo.rewards.config import RewardConfig

CHUNK = 1024  # rows per batch: keeps memory flat and the progress bar moving


@dataclass(frozen=True)
class VerifyConfig:
    input: Annotated[str, tyro.conf.arg(name="in")] = "-"
    """JSONL file of {"gold": ..., "pred": ...} rows (an optional "prompt": the question);
    '-' reads stdin."""

    out: str = "-"
    """Where the verdict rows go (JSONL); '-' writes stdout."""

    task: str = "math"
    """Verifier: math | exact | label | format, or a weighted sum such as 'math:1,format:0.1'
    (overrides --reward.verifier)."""

    skip_bad: bool = False
    """Skip malformed rows (reporting how many on stderr) instead of stopping at the first."""

    reward: RewardConfig = field(default_factory=RewardConfig)
    """Verifier settings (workers, deadline, cache, extraction, labels, format)."""


def main(argv: list[str]) -> int:
    cfg = tyro.cli(VerifyConfig, args=argv, prog="agpo verify")
    try:
        reward_cfg = dataclasses.replace(cfg.reward, verifier=cfg.task)
    except ValueError as e:
        raise UserError(str(e)) from None
    name = "<stdin>" if cfg.input == "-" else cfg.input
    with _open(cfg.input, "r") as f:
        rows, bad = _read_rows(f, name, cfg.skip_bad)
    from agpo.rewards.api import build_reward  # imports torch (agpo.types): after the cheap checks

    with _open(cfg.out, "w") as out, build_reward(reward_cfg) as reward:
        for start in _progress(range(0, len(rows), CHUNK), len(rows)):
            chunk = rows[start : start + CHUNK]
            results = reward.batch([item for item, _ in chunk], [pred for _, pred in chunk])
            for (item, _), r in zip(chunk, results):
                row: dict[str, Any] = {"score": r.score, "parsed": r.parsed, "failure": r.failure}
                if item.id:
                    row = {"id": item.id, **row}
                if len(r.components) > 1:
                    row["components"] = dict(r.components)
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    if bad:
        print(f"skipped {len(bad)} malformed row(s); first: {bad[0]}", file=sys.stderr)
    return 0


def _progress(starts: range, total: int) -> Iterator[int]:
    """Chunk starts, with a progress bar on stderr when there is more than one chunk."""
    if len(starts) <= 1:
        yield from starts
        return
    from rich.console import Console
    from rich.progress import track

    yield from track(starts, description=f"verifying {total} rows", console=Console(stderr=True),
                     transient=True)


def _open(path: str, mode: str) -> Any:
    if path == "-":
        stream = sys.stdin if mode == "r" else sys.stdout
        return _Borrowed(stream)
    try:
        return open(path, mode, encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot open ({e.strerror})") from None


class _Borrowed:
    """stdin/stdout in a ``with`` block without closing them."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __enter__(self) -> IO[str]:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        self.stream.flush() if self.stream.writable() else None


def _read_rows(f: IO[str], name: str, skip_bad: bool) -> tuple[list[tuple[Any, str]], list[str]]:
    from agpo.types import TaskItem

    rows, bad = [], []
    on_bad = (lambda e: bad.append(str(e))) if skip_bad else None
    for line_no, raw in iter_jsonl(f, name, on_bad=on_bad, bad_json="not a JSON object"):
        try:
            row = _parse_row(raw, name, line_no)
        except UserError as e:
            if not skip_bad:
                raise
            bad.append(str(e))
            continue
        rows.append((TaskItem(id=row["id"], prompt=row["prompt"], gold=row["gold"]), row["pred"]))
    return rows, bad


def _parse_row(row: dict[str, Any], name: str, line_no: int) -> dict[str, str]:
    out = {"id": str(row.get("id", "") or "")}
    prompt = row.get("prompt", "")
    if not isinstance(prompt, str):
        raise at(name, line_no, f"field 'prompt': expected a string, got {json.dumps(prompt)[:40]}")
    out["prompt"] = prompt
    for key in ("gold", "pred"):
        if key not in row:
            raise at(name, line_no, f"field '{key}': missing")
        value = row[key]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            got = json.dumps(value)[:40]
            raise at(name, line_no, f"field '{key}': expected a string, got {got}")
        out[key] = value if isinstance(value, str) else json.dumps(value)
    return out
