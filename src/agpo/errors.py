"""The one exception type that reaches the user as a single clear line (and a non-zero exit).

Raise ``UserError`` for bad input: the message names the file, line and field (``file:line:
field: what is wrong``) or the flag and the fix. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user; ``agpo`` prints ``error: <message>`` and exits with code 2."""


def at(path: object, line: int | None, msg: str) -> UserError:
    """``UserError`` located in a file: ``at("x.jsonl", 3, "field 'gold': missing")``."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return UserError(f"{where}: {msg}")
