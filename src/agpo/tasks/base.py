"""The task registry and ``load_task``: a registered name or a local file → ``list[TaskItem]``.

A registered loader is ``fn(split: str, limit: int | None) -> list[TaskItem]`` (``limit`` may be
left out of the signature; ``load_task`` then slices). Local files (.jsonl, .json, .parquet) are
read here and mapped to TaskItems by the layout detected from their fields
(``agpo.tasks.layouts``) or by an explicit ``fields`` mapping.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from agpo.errors import UserError, at
from agpo.io import dumps_finite, load_json, read_jsonl, read_parquet, replace_text
from agpo.registry import Registry
from agpo.types import TaskItem

TaskLoader = Callable[..., list[TaskItem]]
TASKS: Registry[TaskLoader] = Registry("task")

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


def parse_fields(spec: str | Mapping[str, str] | None) -> dict[str, str] | None:
    """``"prompt=question,gold=answer"`` → ``{"prompt": "question", "gold": "answer"}``.

    Keys are agpo's names (prompt, gold, id); values are the file's field names.
    """
    if spec is None or isinstance(spec, Mapping):
        return dict(spec) if spec is not None else None
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in {"prompt", "gold", "id"} or not value.strip():
            raise UserError(
                f"--fields: {part!r} is not KEY=FIELD with KEY one of prompt, gold, id "
                "(e.g. --fields prompt=question,gold=answer)"
            )
        out[key.strip()] = value.strip()
    return out


def load_task(
    spec: str,
    split: str = "test",
    *,
    fields: str | Mapping[str, str] | None = None,
    limit: int | None = None,
) -> list[TaskItem]:
    """Load problems from a registered task name or a local .jsonl/.json/.parquet file.

    ``fields`` maps agpo's names to the file's (``prompt=question,gold=answer[,id=uid]``) for
    layouts agpo does not know; ``limit`` keeps the first ``limit`` problems, and a file (or a
    loader that takes ``limit``) is read only that far.
    """
    fmap = parse_fields(fields)
    path = Path(spec)
    if path.suffix in FILE_SUFFIXES or path.is_file():
        return load_file(path, fields=fmap, limit=limit)
    loader = _lookup(spec)
    if "limit" in inspect.signature(loader).parameters:
        items = loader(split, limit=limit)
    else:
        items = loader(split)
    return items[:limit] if limit is not None else items


def _lookup(name: str) -> TaskLoader:
    # Every task module is imported by agpo.tasks (this module's package), so TASKS is complete.
    if name not in TASKS:
        raise UserError(
            f"--task {name!r} is neither a file ({', '.join(FILE_SUFFIXES)}) nor a registered "
            f"task; registered: {', '.join(TASKS.names())}"
        )
    return TASKS.get(name)


def load_file(path: Path, *, fields: Mapping[str, str] | None = None,
              limit: int | None = None) -> list[TaskItem]:
    """Read the records of a local file and map them to TaskItems (layout auto-detected);
    ``limit``: stop after that many problems (a .jsonl or .parquet file is streamed, so the
    first problems of a huge file come in milliseconds)."""
    from agpo.tasks.layouts import records_to_items

    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a task file ({', '.join(FILE_SUFFIXES)})")
    return records_to_items(iter_records(path), source=str(path), fields=fields, limit=limit)


def iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_or_row_number, record)`` for each record of a .jsonl, .json or .parquet file."""
    if path.suffix == ".parquet":
        yield from read_parquet(path)
    elif path.suffix == ".json":
        yield from _json_records(path)
    else:
        yield from read_jsonl(path)


def _json_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    data = load_json(path)
    # Both a list of records and a {"data"|"examples"|...: [...]} wrapper are published.
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise at(path, None, "expected a list of records (or an object holding one list)")
        data = lists[0]
    if not isinstance(data, list):
        raise at(path, None, f"expected a list of records, got {type(data).__name__}")
    for i, rec in enumerate(data, 1):
        if not isinstance(rec, dict):
            raise at(path, None, f"record {i}: expected an object, got {type(rec).__name__}")
        yield i, rec


def write_items(items: list[TaskItem], path: Path) -> Path:
    """Write TaskItems as agpo's generic jsonl (``id``, ``prompt``, ``gold``, ``meta``), which
    ``load_task(path)`` reads back (meta gains ``layout`` and ``gold_raw``). Written in one
    atomic replace: a killed writer leaves the old file or the new one, never a torn line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_text(path, "".join(
        dumps_finite({"id": it.id, "prompt": it.prompt, "gold": it.gold, "meta": dict(it.meta)},
                     ensure_ascii=False) + "\n" for it in items))
    return path
