"""An evidence run's wall time over all its invocations.

A long run is stopped and started again (a session ends, a lent machine goes back), so the time
of the last invocation says little about what the run cost. Each invocation adds an entry to
``wall_time.json`` in the run's folder and refreshes it every minute while it runs: an
invocation ended by a kill, which gets no chance to write anything, still counts up to its last
refresh (at most a minute is lost).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from agpo.io import load_json, replace_text

LEDGER = "wall_time.json"


class WallClock:
    """Context manager: this invocation's entry in ``out / LEDGER``, kept current.

    ``jobs``: worker processes of this invocation (core time = seconds × jobs).
    ``untracked``: the folder holds work from invocations before the ledger existed, whose time
    is unknown (the summary then says the total is a lower bound).
    """

    def __init__(self, out: Path, jobs: int, *, untracked: bool = False, every_s: float = 60.0) -> None:
        self.path, self.jobs, self.every_s = out / LEDGER, jobs, every_s
        earlier: dict[str, Any] = (load_json(self.path) if self.path.exists()
                                   else {"invocations": []})
        self.earlier: list[dict[str, Any]] = earlier["invocations"]
        self.untracked = bool(earlier.get("untracked_before", untracked))
        self.began = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, daemon=True)

    def __enter__(self) -> WallClock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._write()

    def _refresh(self) -> None:
        while not self._stop.wait(self.every_s):
            self._write()

    def this_s(self) -> float:
        """Seconds this invocation has run."""
        return time.perf_counter() - self._t0

    def invocations(self) -> list[dict[str, Any]]:
        """Every invocation so far, this one last: start (UTC), seconds, jobs."""
        return [*self.earlier, {"start": self.began, "seconds": round(self.this_s(), 1),
                                "jobs": self.jobs}]

    def _write(self) -> None:
        replace_text(self.path, json.dumps({"untracked_before": self.untracked,
                                            "invocations": self.invocations()}, indent=1) + "\n")

    def summary(self) -> dict[str, Any]:
        """Totals for the report: wall and core seconds over all invocations, this one's."""
        inv = self.invocations()
        return {"wall_s": sum(i["seconds"] for i in inv),
                "core_s": sum(i["seconds"] * i["jobs"] for i in inv),
                "invocations": len(inv), "this_s": inv[-1]["seconds"],
                "untracked_before": self.untracked}


def describe(wall: dict[str, Any]) -> str:
    """One sentence for the report from ``WallClock.summary()``."""
    n = wall["invocations"]
    text = (f"Wall time {_hours(wall['wall_s'])} over {n} invocation{'s' if n > 1 else ''} "
            f"({_hours(wall['core_s'])} of worker time; this invocation {_hours(wall['this_s'])})")
    if wall["untracked_before"]:
        text += "; plus invocations from before the run kept this record, not counted"
    return text + "."


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"
