"""The public layouts of the math benchmarks, and the mapping of one record to a TaskItem.

Each benchmark is published with its own field names. A layout names the prompt field, the gold
field and how to read the gold from it; the first layout whose fields are all present in a file's
first record is used for the whole file.

| layout          | prompt                   | gold                            | e.g.              |
|-----------------|--------------------------|---------------------------------|-------------------|
| olympiadbench   | question                 | final_answer (list, ", "-joined)| OlympiadBench     |
| agieval_choice  | passage+question+options | label ("A".."E")                | AGIEval SAT, AQuA |
| harness_choice  | query                    | gold (index into choices)       | AGIEval (lm-eval) |
| cmath           | question                 | golden                          | CMATH             |
| gsm8k           | question                 | answer after "####"             | GSM8K             |
| problem_answer  | problem                  | answer                          | MATH-500, AIME 24 |
| math_solution   | problem                  | last \\boxed{} of solution      | MATH, Minerva     |
| question_answer | question                 | answer                          | AIME 25, AMC23    |
| generic         | prompt                   | gold or answer                  | agpo's own jsonl  |

Golds are normalised only where the meaning cannot change: an integral float ``27.0`` → ``27``,
a zero-padded integer ``025`` → ``25`` (AIME answers are integers 0–999). The raw gold is kept
in ``meta["gold_raw"]``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agpo.errors import UserError, at
from agpo.types import TaskItem

ID_FIELDS = ("id", "unique_id", "ID", "idx", "problem_id", "question_id")
LETTERS = "ABCDEFGHIJ"


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced.

    >>> last_boxed(r"so $x = \\boxed{\\frac{14}{3}}$.")
    '\\\\frac{14}{3}'
    """
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    start, depth = starts[-1], 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i].strip()
    return None  # unbalanced: the gold is unreadable, the caller reports it


def gsm8k_final(answer: str) -> str | None:
    """GSM8K's gold: the text after the last ``####``, without thousands separators."""
    if "####" not in answer:
        return None
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def normalize_gold(value: Any) -> str | None:
    """A gold value as published (str, number, list) → one string; None when empty."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        parts = [p for p in (normalize_gold(v) for v in value) if p]
        return ", ".join(parts) if parts else None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if len(text) >= 2 and text[0] == "$" and text[-1] == "$":
        text = text.strip("$").strip()  # OlympiadBench wraps answers in $...$
    if re.fullmatch(r"-?\d+\.0+", text):
        text = text.split(".")[0]
    if re.fullmatch(r"0\d+", text):
        text = text.lstrip("0") or "0"
    boxed = last_boxed(text) if "\\boxed" in text or "\\fbox" in text else None
    return (boxed if boxed is not None else text) or None


def _gold_gsm8k(rec: Mapping[str, Any]) -> str | None:
    return normalize_gold(gsm8k_final(str(rec["answer"])))


def _gold_solution(rec: Mapping[str, Any]) -> str | None:
    # A solution without \boxed{} has no readable gold; the whole text is never a gold answer.
    boxed = last_boxed(str(rec["solution"]))
    return normalize_gold(boxed) if boxed is not None else None


def _gold_choice_index(rec: Mapping[str, Any]) -> str | None:
    gold = rec["gold"]
    index = gold[0] if isinstance(gold, list) and gold else gold
    return LETTERS[int(index)] if isinstance(index, int) and 0 <= index < len(LETTERS) else None


def _prompt_agieval(rec: Mapping[str, Any]) -> str:
    parts = [str(rec["passage"])] if rec.get("passage") else []
    parts.append(str(rec["question"]))
    parts.extend(str(o) for o in rec.get("options") or [])
    parts.append("Answer with the letter of the correct option.")
    return "\n".join(parts)


@dataclass(frozen=True)
class Layout:
    """How one published layout maps to (prompt, gold)."""

    name: str
    requires: tuple[str, ...]
    prompt: Callable[[Mapping[str, Any]], str]
    gold: Callable[[Mapping[str, Any]], str | None]
    meta: Mapping[str, Any] | None = None
    lists: tuple[str, ...] = ()
    """Fields published as lists of values (answer lists, options); every other field it
    reads holds one value."""
    optional: tuple[str, ...] = ()
    """Fields read when present."""

    @property
    def gold_field(self) -> str:
        return next(r for r in reversed(self.requires) if r != "####")


def _field(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda rec: rec[name]


def _gold_field(name: str) -> Callable[[Mapping[str, Any]], str | None]:
    return lambda rec: normalize_gold(rec[name])


LAYOUTS: tuple[Layout, ...] = (
    Layout("olympiadbench", ("question", "final_answer"), _field("question"),
           _gold_field("final_answer"), lists=("final_answer",)),
    Layout("agieval_choice", ("question", "options", "label"), _prompt_agieval,
           _gold_field("label"), {"verifier": "exact"}, lists=("options",), optional=("passage",)),
    Layout("harness_choice", ("query", "choices", "gold"), _field("query"), _gold_choice_index,
           {"verifier": "exact"}, lists=("choices", "gold")),
    Layout("cmath", ("question", "golden"), _field("question"), _gold_field("golden")),
    Layout("gsm8k", ("question", "answer", "####"), _field("question"), _gold_gsm8k),
    Layout("problem_answer", ("problem", "answer"), _field("problem"), _gold_field("answer")),
    Layout("math_solution", ("problem", "solution"), _field("problem"), _gold_solution),
    Layout("question_answer", ("question", "answer"), _field("question"), _gold_field("answer")),
    Layout("query_answer", ("query", "answer"), _field("query"), _gold_field("answer")),
    Layout("generic", ("prompt", "gold"), _field("prompt"), _gold_field("gold")),
    Layout("generic_answer", ("prompt", "answer"), _field("prompt"), _gold_field("answer")),
)


def _matches(layout: Layout, rec: Mapping[str, Any]) -> bool:
    for req in layout.requires:
        if req == "####":  # GSM8K is told apart from question/answer by its answer's marker
            if "####" not in str(rec.get("answer", "")):
                return False
        elif rec.get(req) in (None, "", []):
            return False
    return True


def detect_layout(rec: Mapping[str, Any], source: str, line: int) -> Layout:
    """The first layout whose fields are present (non-empty) in ``rec``, or a UserError."""
    for layout in LAYOUTS:
        if _matches(layout, rec):
            return layout
    expected = "; ".join(
        f"{lay.name}: {'+'.join(r for r in lay.requires if r != '####')}" for lay in LAYOUTS
    )
    raise at(
        source, line,
        f"unknown layout: fields found: {', '.join(sorted(rec)) or '(none)'}; expected one of "
        f"{expected}; or map yours with --fields prompt=FIELD,gold=FIELD[,id=FIELD]",
    )


def _custom_layout(fields: Mapping[str, str]) -> Layout:
    missing = {"prompt", "gold"} - set(fields)
    if missing:
        raise UserError(f"--fields: missing {', '.join(sorted(missing))} (need prompt= and gold=)")
    return Layout("custom", (fields["prompt"], fields["gold"]), _field(fields["prompt"]),
                  _gold_field(fields["gold"]), lists=(fields["gold"],))


def records_to_items(
    records: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    source: str,
    fields: Mapping[str, str] | None = None,
    meta: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> list[TaskItem]:
    """Map ``(line, record)`` pairs to TaskItems; every record must fit the detected layout.

    An unreadable gold is an error naming the line, never a silently unsolvable problem; so is
    an object or a list where the layout reads one value (it would reach the model, or the
    verifier, as Python's spelling of it). ``limit``: stop once that many problems are read
    (the rest of ``records`` is never consumed, so a huge file is not read to its end).
    """
    layout = _custom_layout(fields) if fields else None
    id_field = fields.get("id") if fields else None
    items: list[TaskItem] = []
    seen: dict[str, tuple[int, str | None]] = {}  # id → (line, the field it came from)
    if limit is not None and limit <= 0:
        return items
    for line, rec in records:
        if layout is None:
            layout = detect_layout(rec, source, line)
        for req in layout.requires:
            if req != "####" and rec.get(req) in (None, "", []):
                raise at(source, line, f"field {req!r}: missing or empty "
                                       f"(layout {layout.name}; fields found: {', '.join(rec)})")
        for name in (*layout.requires, *layout.optional):
            if name != "####" and rec.get(name) is not None:
                _check_value(rec[name], name, name in layout.lists, source, line)
        gold = layout.gold(rec)
        if gold is None:
            raise at(source, line, f"field {layout.gold_field!r}: no gold answer could be "
                                   f"read (layout {layout.name})")
        pid, from_field = _record_id(rec, id_field, len(items))
        if from_field is not None:
            _check_value(rec[from_field], from_field, False, source, line)
        if pid in seen:
            raise _id_clash(source, line, pid, from_field, *seen[pid])
        seen[pid] = (line, from_field)
        raw = rec[layout.gold_field]
        items.append(TaskItem(
            id=pid, prompt=str(layout.prompt(rec)), gold=gold,
            meta={**(meta or {}), **(layout.meta or {}), **_own_meta(rec), "layout": layout.name,
                  "line": line, "gold_raw": raw if isinstance(raw, (str, int, float)) else str(raw)},
        ))
        if len(items) == limit:
            break  # before the next record is even read
    return items


def _check_value(value: Any, name: str, many: bool, source: str, line: int) -> None:
    """One value (text or a finite number), or with ``many`` a list of them: anything else
    would be sent to the model or the verifier as its Python repr."""
    values = value if many and isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, str | int) or (isinstance(v, float) and math.isfinite(v)):
            continue
        if isinstance(v, dict | list):
            shown = json.dumps(v, ensure_ascii=False, default=str)[:60]
            what = f"{'an object' if isinstance(v, dict) else 'a list'} {shown}"
        else:  # null in a list, NaN, a parquet column's date or bytes
            what = "null" if v is None else str(v) if isinstance(v, float) else type(v).__name__
        expected = "text or a finite number" + (" (or a list of them)" if many else "")
        raise at(source, line, f"field {name!r}: expected {expected}, got {what}")


def _id_clash(source: str, line: int, pid: str, field: str | None,
              first_line: int, first_field: str | None) -> UserError:
    """The error of an id seen twice, saying which of the two ids was implicit (a record
    without an id field is named by its position among the problems, counted from 0)."""
    fix = "give every record an id field, or none"
    if field is not None and first_field is not None:
        return at(source, line, f"field {field!r}: duplicate id {pid!r} (also line {first_line})")
    if field is None:
        return at(source, line, f"implicit id {pid!r}: this record has no id field "
                                f"({', '.join(ID_FIELDS)}), so its id is its position {pid!r} "
                                f"(counted from 0), which line {first_line}'s field "
                                f"{first_field!r} already holds; {fix}")
    return at(source, line, f"field {field!r}: id {pid!r} is already the implicit id of line "
                            f"{first_line} (a record without an id field is named by its "
                            f"position, counted from 0); {fix}")


def _own_meta(rec: Mapping[str, Any]) -> Mapping[str, Any]:
    """agpo's own jsonl carries a ``meta`` object (e.g. ``{"verifier": "exact"}``)."""
    own = rec.get("meta")
    return own if isinstance(own, Mapping) else {}


def _record_id(rec: Mapping[str, Any], id_field: str | None, index: int) -> tuple[str, str | None]:
    """The record's id and the field it came from (None: the implicit id, its position)."""
    for name in (id_field,) if id_field else ID_FIELDS:
        if name in rec and rec[name] not in (None, ""):
            return str(rec[name]), name
    return str(index), None
