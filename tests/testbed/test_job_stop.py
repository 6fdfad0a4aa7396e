"""A job in the worker pool stopped by SIGTERM (the pool's terminate after Ctrl-C, or a stop of
every process) gets to finish what it does on a stop — a training checkpoints its step — once,
even when a second SIGTERM follows, and ends without a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agpo.apps.testbed.runs import _call

JOB = """
import os, signal, sys, time
from pathlib import Path
from agpo.apps.testbed.runs import _call

def work():
    try:
        print("ready", flush=True)
        time.sleep(120)
    except KeyboardInterrupt:
        os.kill(os.getpid(), signal.SIGTERM)  # the second SIGTERM, while the job saves
        time.sleep(0.3)
        Path(sys.argv[1]).write_text("saved")
        raise

_call(work)
"""


def test_sigterm_stops_a_job_once_and_quietly(tmp_path: Path) -> None:
    marker = tmp_path / "saved"
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(marker)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert marker.read_text() == "saved"
    assert "Traceback" not in err, err


def test_a_worker_between_jobs_keeps_ignoring_sigterm() -> None:
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # what the pool's initializer sets
    try:
        _call(lambda: None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


POOL = """
import signal, sys, time
from pathlib import Path
from rich.console import Console
from agpo.apps.testbed.runs import Job, execute
from agpo.cli import _terminated


def long():
    Path("long_started").touch()
    time.sleep(300)


def short():
    Path("short_done").touch()  # this worker then waits on the task queue


if __name__ == "__main__":
    jobs = [Job("long", "long", long, Path("long")), Job("short", "short", short, Path("short"))]
    signal.signal(signal.SIGTERM, _terminated)  # as the agpo command does
    try:
        execute(jobs, 2, console=Console(stderr=True), progress=False, keep_order=True)
    except KeyboardInterrupt:
        sys.exit(130)
"""


def test_sigterm_to_every_process_ends_the_pool(tmp_path: Path) -> None:
    # One worker busy, one idle in the task queue's read: SIGTERM to the whole process group, as
    # a job scheduler sends it. An idle worker killed inside that read would leave the queue's
    # lock held and the parent's pool.terminate waiting for it forever.
    (tmp_path / "pool.py").write_text(POOL)
    proc = subprocess.Popen([sys.executable, "pool.py"], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((tmp_path / "long_started").exists() and (tmp_path / "short_done").exists()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the parent hung after SIGTERM") from None
    assert proc.returncode == 130
    assert "Traceback" not in err, err
