"""A small process pool with a hard deadline per item.

``concurrent.futures.ProcessPoolExecutor`` cannot kill one stuck worker without breaking the whole
pool, so this keeps one pipe pair per worker and does it by hand: each item goes to an idle
worker; an item whose worker has not answered ``timeout_s + grace_s`` after dispatch scores 0 with
failure ``"timeout"`` and that worker is killed (SIGKILL: C code ignores softer signals) and
replaced on demand; a worker that dies mid-item gives failure ``"worker_crash"``.

Workers are fresh interpreters (``python -m agpo.rewards.worker``, like the ``spawn`` start
method): safe when the parent has torch's threads running, and unlike multiprocessing's spawn and
forkserver they never re-import the caller's ``__main__``, so a script without a
``__name__ == "__main__"`` guard still works. They start lazily (≈ 0.5 s each on a quiet machine,
mostly importing sympy; several seconds on a loaded one) and live across batches. An item's
deadline starts when its worker has said it is ready: start-up is never an item's timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import wait
from pathlib import Path

from agpo.rewards.worker import VerifierVerdict

Job = tuple[str, tuple[str, ...]]
"""(task name in ``agpo.rewards.worker.TASKS``, string arguments)."""

_SRC = str(Path(__file__).resolve().parents[2])  # the folder holding the agpo package
STARTUP_S = 120.0  # a worker that has not said "ready" by then is broken, not slow


def _start_worker() -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([_SRC, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "agpo.rewards.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


class WorkerPool:
    """``workers`` processes verifying jobs under a hard per-item deadline; thread-safe."""

    def __init__(self, workers: int, timeout_s: float, grace_s: float = 0.5) -> None:
        if workers < 1:
            raise ValueError(f"a WorkerPool needs at least one worker, got {workers}")
        self.timeout_s, self.grace_s = timeout_s, grace_s
        self._slots: list[subprocess.Popen[str] | None] = [None] * workers
        self._lock = threading.Lock()
        self.restarts = 0  # workers replaced after a timeout or crash (a health metric)
        self._finalizer = weakref.finalize(self, _shutdown, self._slots)

    @property
    def size(self) -> int:
        return len(self._slots)

    def run(self, jobs: Sequence[Job]) -> list[VerifierVerdict]:
        """Verdicts of ``jobs`` in order; none waits longer than its deadline."""
        with self._lock:
            return self._run(jobs)

    def close(self) -> None:
        """Stop the workers (idempotent); the pool starts new ones if used again."""
        with self._lock:
            _shutdown(self._slots)

    def _run(self, jobs: Sequence[Job]) -> list[VerifierVerdict]:
        results: list[VerifierVerdict | None] = [None] * len(jobs)
        pending = deque(range(len(jobs)))
        busy: dict[int, tuple[int, float]] = {}  # slot → (job index, kill time)
        self._start(min(len(jobs), len(self._slots)))
        while pending or busy:
            for slot in range(len(self._slots)):
                if pending and slot not in busy:
                    j = pending.popleft()
                    self._send(slot, j, jobs[j])
                    busy[slot] = (j, time.monotonic() + self.timeout_s + self.grace_s)
            streams = {self._worker(slot).stdout: slot for slot in busy}
            next_kill = min(kill for _, kill in busy.values())
            for stream in wait(list(streams), timeout=max(0.0, next_kill - time.monotonic())):
                slot = streams[stream]  # type: ignore[index]
                j, _ = busy.pop(slot)
                results[j] = self._receive(slot)
            now = time.monotonic()
            for slot, (j, kill) in list(busy.items()):
                if now >= kill:
                    del busy[slot]
                    results[j] = (0.0, "timeout", None)
                    self._replace(slot)
        return results  # type: ignore[return-value]

    def _send(self, slot: int, j: int, job: Job) -> None:
        line = json.dumps([j, job[0], list(job[1]), self.timeout_s]) + "\n"
        for attempt in (0, 1):
            worker = self._worker(slot)
            try:
                worker.stdin.write(line)  # type: ignore[union-attr]
                worker.stdin.flush()  # type: ignore[union-attr]
                return
            except (BrokenPipeError, OSError):  # died while idle: replace it once and retry
                self._replace(slot)
                if attempt:
                    raise

    def _receive(self, slot: int) -> VerifierVerdict:
        line = self._worker(slot).stdout.readline()  # type: ignore[union-attr]
        try:
            _, score, failure, read = json.loads(line)
            return float(score), failure, read
        except (ValueError, TypeError):  # EOF ("") or garbage: the worker died mid-item
            self._replace(slot)
            return 0.0, "worker_crash", None

    def _worker(self, slot: int) -> subprocess.Popen[str]:
        worker = self._slots[slot]
        if worker is None:
            self._start(slot + 1)
            worker = self._slots[slot]
        return worker  # type: ignore[return-value]

    def _start(self, count: int) -> None:
        """Start the missing workers among the first ``count`` slots, together, and wait until
        each has imported its libraries (a first line, "ready")."""
        started = [slot for slot in range(count) if self._slots[slot] is None]
        for slot in started:
            self._slots[slot] = _start_worker()
        waiting = {self._slots[slot].stdout: slot for slot in started}  # type: ignore[union-attr]
        deadline = time.monotonic() + STARTUP_S
        try:
            while waiting:
                ready = wait(list(waiting), timeout=max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise RuntimeError(
                        f"a verification worker did not start within {STARTUP_S:.0f} s")
                for stream in ready:
                    del waiting[stream]  # type: ignore[arg-type]
                    if stream.readline().strip() != "ready":  # type: ignore[union-attr]
                        raise RuntimeError(
                            "a verification worker exited at start-up; run `python -m "
                            "agpo.rewards.worker` to see why")
        except BaseException:
            for slot in started:  # none of them is known to work
                self._replace(slot)
            raise

    def _replace(self, slot: int) -> None:
        worker = self._slots[slot]
        if worker is not None:
            _kill(worker)
            self._slots[slot] = None
            self.restarts += 1


def _kill(worker: subprocess.Popen[str]) -> None:
    worker.kill()
    worker.wait()
    for stream in (worker.stdin, worker.stdout):
        if stream is not None:
            stream.close()


def _shutdown(slots: list[subprocess.Popen[str] | None]) -> None:
    for i, worker in enumerate(slots):
        if worker is None:
            continue
        try:
            worker.stdin.close()  # type: ignore[union-attr]  # EOF: the worker's loop ends
            worker.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        _kill(worker)
        slots[i] = None
