"""``build_reward(cfg) -> RewardFn``: the one object the trainer and evaluator call.

``RewardFn.batch`` plans every (item, completion) with each configured verifier, answers cheap
cases in-process, deduplicates the rest by cache key (samples of one problem repeat a few
answers), and sends only unseen keys to the worker pool, which enforces the per-item deadline.
``RewardFn.submit`` is ``batch`` without waiting, so a caller can sample its next batch meanwhile.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from agpo.errors import UserError
from agpo.rewards.config import RewardConfig
from agpo.rewards.pool import Job, WorkerPool
from agpo.rewards.verifiers import BAD_GOLD, VERIFIERS, Pending, Plan, Verifier
from agpo.rewards.worker import VerifierVerdict, run_task
from agpo.types import RewardResult, TaskItem


def is_skip(result: RewardResult) -> bool:
    """True for an item to drop from training and evaluation (its gold answer is unusable)."""
    return result.failure == BAD_GOLD


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, ...], VerifierVerdict] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> VerifierVerdict | None:
        verdict = self._data.get(key)
        if verdict is not None:
            self._data.move_to_end(key)
        return verdict

    def put(self, key: tuple[str, ...], verdict: VerifierVerdict) -> None:
        if self.size == 0 or verdict[1] == "worker_crash":  # a crash may not recur: retry later
            return
        self._data[key] = verdict
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


class RewardFn:
    """Scores completions; see the module doc. Use as a context manager (or call ``close()``)
    so the worker processes stop with it. Thread-safe.

    ``stats`` counts verdicts by route: ``inline`` (answered in-process), ``cache_hits``,
    ``worker_jobs`` (sent to a worker), ``timeouts``.
    """

    def __init__(self, cfg: RewardConfig) -> None:
        self.cfg = cfg
        try:
            self._components: list[tuple[str, float, Verifier]] = [
                (name, weight, VERIFIERS.get(name)(cfg)) for name, weight in cfg.components
            ]
        except KeyError as e:
            raise UserError(f"--reward.verifier: {e.args[0]}") from None
        self._cache = _LRU(cfg.cache_size)
        self._lock = threading.Lock()
        self._pool: WorkerPool | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.stats: Counter[str] = Counter()

    def __call__(self, item: TaskItem, completion: str) -> RewardResult:
        return self.batch([item], [completion])[0]

    def batch(self, items: Sequence[TaskItem], completions: Sequence[str]) -> list[RewardResult]:
        """One result per (item, completion), in order; each within the per-item deadline."""
        if len(items) != len(completions):
            raise ValueError(f"{len(items)} items but {len(completions)} completions")
        # Samples of one problem repeat whole completions (a small model's short answers
        # thousands of times in an n=1024 eval), so each distinct (item, completion) is planned
        # and combined once; verifiers are pure functions of the pair, so no result changes.
        # This is most of batch()'s in-process time, which the eval spends on its main thread.
        first: dict[tuple[int, str], int] = {}
        slots = [first.setdefault((id(it), c), len(first)) for it, c in zip(items, completions)]
        unique = [(items[j], completions[j]) for j in _first_positions(slots, len(first))]
        plans = [[v.plan(it, c) for _, _, v in self._components] for it, c in unique]
        verdicts = self._resolve([p for row in plans for p in row if isinstance(p, Pending)])
        distinct = [self._combine([_result(p, verdicts) for p in row]) for row in plans]
        results = [distinct[k] for k in slots]
        if self.cfg.bad_gold == "error":
            for item, result in zip(items, results):
                if result.failure == BAD_GOLD:
                    raise UserError(f"item {item.id!r}: gold answer {item.gold!r} does not parse")
        uses = Counter(slots)
        self.stats["verdicts"] += len(results)
        for k, row in enumerate(plans):  # counted per sample, as if each had been planned
            self.stats["inline"] += uses[k] * sum(isinstance(p, RewardResult) for p in row)
            # an in-process deadline (a backtracking pattern) is a verifier timeout too
            self.stats["timeouts"] += uses[k] * sum(
                isinstance(p, RewardResult) and p.failure == "timeout" for p in row)
            # a repeat of a worker-bound plan is what the cache would have answered
            self.stats["cache_hits"] += (uses[k] - 1) * sum(isinstance(p, Pending) for p in row)
        return results

    def submit(
        self, items: Sequence[TaskItem], completions: Sequence[str]
    ) -> Future[list[RewardResult]]:
        """``batch(items, completions)`` without waiting: its future holds the same results (or
        raises the same error). Batches run one at a time, in submission order, on one helper
        thread, so the caller can sample its next batch meanwhile (torch releases the GIL while
        it computes). With ``workers=0`` verification must stay in the caller's thread (its
        deadline is SIGALRM, main thread only), so the future comes back already done.
        """
        items, completions = list(items), list(completions)  # the caller may reuse its lists
        if self.cfg.workers == 0:
            done: Future[list[RewardResult]] = Future()
            try:
                done.set_result(self.batch(items, completions))
            except Exception as e:  # delivered by result(), as from the helper thread
                done.set_exception(e)
            return done
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="agpo-reward")
            executor = self._executor
        return executor.submit(self.batch, items, completions)

    def clear_cache(self) -> None:
        """Forget every cached verdict (benchmarks; a changed gold set)."""
        with self._lock:
            self._cache = _LRU(self.cfg.cache_size)

    def close(self) -> None:
        """Finish submitted batches, stop the helper thread and the worker processes (a later
        batch starts them again)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> RewardFn:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def pool(self) -> WorkerPool:
        """The worker pool, started on first use (at least one worker)."""
        with self._lock:
            if self._pool is None:
                self._pool = WorkerPool(max(1, self.cfg.workers), self.cfg.timeout_s)
            return self._pool

    def _resolve(self, pending: list[Pending]) -> dict[tuple[str, ...], VerifierVerdict]:
        verdicts: dict[tuple[str, ...], VerifierVerdict] = {}
        todo: dict[tuple[str, ...], Job] = {}
        with self._lock:
            for p in pending:
                if p.key in verdicts or p.key in todo:
                    self.stats["cache_hits"] += 1
                elif (hit := self._cache.get(p.key)) is not None:
                    verdicts[p.key] = hit
                    self.stats["cache_hits"] += 1
                else:
                    todo[p.key] = (p.task, p.args)
        fresh = self._run(list(todo.values()))
        with self._lock:
            for key, verdict in zip(todo, fresh):
                verdicts[key] = verdict
                self._cache.put(key, verdict)
        self.stats["worker_jobs"] += len(todo)
        self.stats["timeouts"] += sum(v[1] == "timeout" for v in fresh)
        return verdicts

    def _run(self, jobs: list[Job]) -> list[VerifierVerdict]:
        if not jobs:
            return []
        in_main_thread = threading.current_thread() is threading.main_thread()
        if self.cfg.workers == 0 and in_main_thread:
            # Soft deadline only (SIGALRM): C code that never returns to Python is not stopped.
            return [run_task(task, args, self.cfg.timeout_s) for task, args in jobs]
        return self.pool.run(jobs)

    def _combine(self, parts: list[RewardResult]) -> RewardResult:
        components = {name: r.score for (name, _, _), r in zip(self._components, parts)}
        if any(r.failure == BAD_GOLD for r in parts):  # a skipped item earns no partial credit
            return RewardResult(0.0, parts[0].parsed, BAD_GOLD, components)
        score = sum(w * r.score for (_, w, _), r in zip(self._components, parts))
        return RewardResult(score, parts[0].parsed, parts[0].failure, components)


def _result(plan: Plan, verdicts: dict[tuple[str, ...], VerifierVerdict]) -> RewardResult:
    if isinstance(plan, RewardResult):
        return plan
    score, failure, read = verdicts[plan.key]
    if plan.if_gold_ok is not None and failure is None:
        score, failure = plan.if_gold_ok
    elif read is not None and failure in (None, "wrong") and plan.guard is not None:
        # What math-verify read from the response meets the same policy as agpo's own reading
        # (an expression copied from the prompt is never credited, whatever its value).
        failure = plan.guard(read) or failure
        score = 0.0 if failure else score
    return RewardResult(score, plan.parsed if plan.parsed is not None else read, failure)


def _first_positions(slots: list[int], count: int) -> list[int]:
    """Where each of the ``count`` distinct values of ``slots`` (numbered 0, 1, … in order of
    first use) first occurs."""
    positions = [-1] * count
    for j, k in enumerate(slots):
        if positions[k] < 0:
            positions[k] = j
    return positions


def build_reward(cfg: RewardConfig) -> RewardFn:
    """The reward function of ``cfg`` (workers start on the first batch that needs them)."""
    return RewardFn(cfg)
