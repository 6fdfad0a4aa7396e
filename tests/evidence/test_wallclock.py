"""The evidence run's wall-time record: kept current while an invocation runs (a kill loses at
most one refresh), summed over invocations, and honest about time it never saw."""

from __future__ import annotations

import json
import time
from pathlib import Path

from agpo.apps.evidence.wallclock import LEDGER, WallClock, describe


def _ledger(out: Path) -> dict:
    return json.loads((out / LEDGER).read_text())


def test_refreshed_while_running_and_summed_over_invocations(tmp_path: Path) -> None:
    with WallClock(tmp_path, 2, every_s=0.05):
        assert _ledger(tmp_path)["invocations"][0]["seconds"] < 0.05  # written on entry
        time.sleep(0.3)
        # what a kill right now would leave behind: the last refresh
        assert _ledger(tmp_path)["invocations"][0]["seconds"] >= 0.1
    first = _ledger(tmp_path)["invocations"][0]["seconds"]
    assert first >= 0.3

    with WallClock(tmp_path, 1, every_s=60) as clock:
        time.sleep(0.1)
        wall = clock.summary()
    inv = _ledger(tmp_path)["invocations"]
    assert [i["jobs"] for i in inv] == [2, 1] and inv[0]["seconds"] == first
    assert wall["invocations"] == 2 and abs(wall["wall_s"] - first - wall["this_s"]) < 1e-6
    assert abs(wall["core_s"] - (2 * first + wall["this_s"])) < 1e-6
    assert not wall["untracked_before"]
    assert describe(wall).startswith("Wall time 0.00 h over 2 invocations (")


def test_time_before_the_record_is_said_to_be_missing(tmp_path: Path) -> None:
    with WallClock(tmp_path, 1, untracked=True):
        pass
    with WallClock(tmp_path, 1) as clock:  # later invocations keep saying so
        wall = clock.summary()
    assert wall["untracked_before"] and "not counted" in describe(wall)
