"""Worker pool: hang and crash recovery, deadlines from threads, reuse across batches."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from agpo.errors import UserError
from agpo.rewards import RewardConfig, RewardFn, build_reward
from agpo.rewards import pool as pool_module
from agpo.rewards.pool import WorkerPool
from agpo.types import TaskItem

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(workers=2, timeout_s=1.0, grace_s=0.3)
    yield p
    p.close()


def test_hung_worker_is_killed_and_replaced(pool: WorkerPool) -> None:
    # selftest_sleep blocks SIGALRM and sleeps in C: only the parent's SIGKILL ends it.
    restarts = pool.restarts
    verdicts = pool.run([("selftest_sleep", ("60",)), ("math", ("2", "1+1"))])
    assert verdicts == [(0.0, "timeout", None), (1.0, None, None)]
    assert pool.restarts == restarts + 1
    assert pool.run([("math", ("3", "3"))]) == [(1.0, None, None)]  # the replacement works


def test_crashed_worker_is_replaced(pool: WorkerPool) -> None:
    restarts = pool.restarts
    verdicts = pool.run([("selftest_exit", ("3",)), ("math", ("\\frac{1}{2}", "0.5"))])
    assert verdicts == [(0.0, "worker_crash", None), (1.0, None, None)]
    assert pool.restarts == restarts + 1
    assert pool.run([("math", ("4", "5"))]) == [(0.0, "wrong", None)]


def test_more_jobs_than_workers_keep_their_order(pool: WorkerPool) -> None:
    jobs = [("math", (str(n), f"{n // 2} + {n - n // 2}")) for n in range(10)]
    jobs[3] = ("math", ("3", "4"))
    expected = [(1.0, None, None)] * 10
    expected[3] = (0.0, "wrong", None)
    assert pool.run(jobs) == expected


def test_close_then_reuse_restarts_workers(pool: WorkerPool) -> None:
    pool.close()
    assert pool.run([("math", ("7", "7.0"))]) == [(1.0, None, None)]


def test_verification_from_a_thread_keeps_its_deadline() -> None:
    # workers=0 means "in the calling thread" — impossible off the main thread (signal.alarm),
    # so the call must go to a worker process and the hostile item must time out there.
    cfg = RewardConfig(verifier="math", workers=0, timeout_s=1.0, cache_size=0)
    out: dict[str, object] = {}
    with build_reward(cfg) as reward:

        def target() -> None:
            out["results"] = reward.batch(
                [TaskItem("a", "", "x = 5"), TaskItem("b", "", "\\frac{1}{2}")],
                ["\\boxed{x = 2^{2^{2^{100}}}}", "\\boxed{\\frac{2}{4}}"],
            )

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        results = out["results"]
        assert [(r.score, r.failure) for r in results] == [(0.0, "timeout"), (1.0, None)]
        assert reward._pool is not None  # a worker process did the work


def test_workers_zero_in_the_main_thread_runs_in_process() -> None:
    cfg = RewardConfig(verifier="math", workers=0, timeout_s=5.0)
    with build_reward(cfg) as reward:
        assert reward(TaskItem("a", "", "\\frac{1}{2}"), "\\boxed{0.5}").score == 1.0
        assert reward._pool is None


def test_many_threads_share_one_reward_fn(math_reward: RewardFn) -> None:
    results: list[float] = []
    lock = threading.Lock()

    def target(n: int) -> None:
        r = math_reward(TaskItem(str(n), "", f"\\frac{{{n}}}{{7}}"), f"\\boxed{{{n}/7}}")
        with lock:
            results.append(r.score)

    threads = [threading.Thread(target=target, args=(n,)) for n in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [1.0] * 6


def test_worker_module_does_not_import_torch() -> None:
    # Workers are fresh interpreters; dragging torch in would cost seconds and memory per worker.
    code = "import sys, agpo.rewards.worker; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_submit_equals_batch_and_keeps_order() -> None:
    items = [TaskItem(f"p{i}", "", g) for i, g in enumerate(["\\sqrt{2}", "\\frac{1}{2}", "x+1", "5"])]
    texts = ["\\boxed{2^{1/2}}", "\\boxed{0.5}", "\\boxed{1+x}", "\\boxed{4}"]
    with build_reward(RewardConfig(verifier="math", workers=1)) as reward:
        futures = [reward.submit(items, texts), reward.submit(items[::-1], texts[::-1])]
        got = [f.result(timeout=30) for f in futures]
        assert got == [reward.batch(items, texts), reward.batch(items[::-1], texts[::-1])]
        assert [r.score for r in got[0]] == [1.0, 1.0, 1.0, 0.0]


def test_submit_with_workers_zero_runs_in_the_caller_thread() -> None:
    # workers=0's deadline is SIGALRM (main thread only): the future comes back already done.
    cfg = RewardConfig(verifier="math", workers=0, bad_gold="error")
    with build_reward(cfg) as reward:
        done = reward.submit([TaskItem("a", "", "\\frac{1}{2}")], ["\\boxed{0.5}"])
        assert done.done() and done.result()[0].score == 1.0
        assert reward._pool is None and reward._executor is None
        failed = reward.submit([TaskItem("b", "", "$$")], ["\\boxed{1}"])
        assert failed.done()
        with pytest.raises(UserError, match="does not parse"):
            failed.result()


def test_submit_delivers_errors_from_the_helper_thread() -> None:
    cfg = RewardConfig(verifier="math", workers=1, bad_gold="error")
    with build_reward(cfg) as reward:
        with pytest.raises(UserError, match="does not parse"):
            reward.submit([TaskItem("b", "", "$$")], ["\\boxed{1}"]).result(timeout=30)


def test_repeated_completions_score_as_if_planned_one_by_one() -> None:
    # A batch plans each distinct (item, completion) once; results and per-sample stats must
    # equal scoring every sample on its own.
    a, b = TaskItem("a", "", "12"), TaskItem("b", "", "\\frac{\\sqrt{3}}{3}")
    pairs = [(a, "12"), (a, "12"), (b, "\\boxed{\\frac{1}{\\sqrt{3}}}"), (a, "13"),
             (b, "\\boxed{\\frac{1}{\\sqrt{3}}}"), (a, "no idea\nreally"), (b, "\\boxed{\\sqrt{1/3}}"),
             (b, "\\boxed{\\sqrt{1/3}}")]
    cfg = RewardConfig(verifier="math", workers=0, cache_size=0)
    with build_reward(cfg) as batched, build_reward(cfg) as single:
        got = batched.batch([it for it, _ in pairs], [c for _, c in pairs])
        want = [single(it, c) for it, c in pairs]
        assert got == want
        assert [r.score for r in got] == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
        for key in ("verdicts", "inline"):
            assert batched.stats[key] == single.stats[key], key
        # each repeated symbolic answer is one worker job; each repeat counts as a cache hit
        assert batched.stats["worker_jobs"] == 2 and batched.stats["cache_hits"] == 2


def _slow_start(seconds: float) -> subprocess.Popen[str]:
    """A worker whose interpreter takes ``seconds`` to start (a loaded machine)."""
    code = (f"import time, runpy; time.sleep({seconds}); "
            "runpy.run_module('agpo.rewards.worker', run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pool_module._SRC, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


def test_start_up_never_counts_against_an_items_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Start-up (3 s here) is longer than the item deadline (0.5 s + 0.2 s grace): before, the
    # first item of every fresh worker on a loaded machine scored 0 with "timeout".
    monkeypatch.setattr(pool_module, "_start_worker", lambda: _slow_start(3.0))
    slow = WorkerPool(workers=2, timeout_s=0.5, grace_s=0.2)
    try:
        assert slow.run([("math", ("2", "2")), ("math", ("3", "4"))]) == [
            (1.0, None, None), (0.0, "wrong", None)]
        assert slow.restarts == 0
    finally:
        slow.close()


def test_a_worker_that_cannot_start_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = [sys.executable, "-c", "raise SystemExit(3)"]
    monkeypatch.setattr(pool_module, "_start_worker", lambda: subprocess.Popen(
        broken, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    dead = WorkerPool(workers=1, timeout_s=1.0)
    with pytest.raises(RuntimeError, match="exited at start-up"):
        dead.run([("math", ("2", "2"))])
    assert dead._slots == [None]  # nothing half-started is kept
