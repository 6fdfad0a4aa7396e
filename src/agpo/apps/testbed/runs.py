"""The demo's and the evidence run's work: base models, RL runs and evaluations as jobs that run
in parallel worker processes, one torch thread each, under one progress display.

Every job is a pure function of its arguments (seeds fixed, one thread), so where it runs does not
change what it writes: ``--jobs 2`` writes the same numbers as ``--jobs 1`` on one machine (a test
pins it). Workers are started with ``spawn`` (torch + fork is unsafe) and receive only what this
module builds — paths and frozen configs —, never anything read from a file. A worker ends with its
parent, however the parent ends (``die_with_parent``). A job whose output is complete is skipped;
a half-done RL run resumes from its last checkpoint (``train(resume=True)``) and a half-done
evaluation from its samples file, so an interrupted command continues where it stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from agpo.models.testbed import Recipe, build_base_model, model_dir
from agpo.apps.testbed.methods import METHODS, TASK, TOKENS_PER_RESPONSE, Method

if TYPE_CHECKING:  # the trainer is imported when training starts: `agpo demo --help` stays quick
    from agpo.train.config import RunConfig

CHECKPOINTS_PER_RUN = 6
"""Checkpoints written over one RL run: what an interrupted run loses at most is a sixth of it
(a checkpoint of the testbed model costs milliseconds)."""


def default_jobs() -> int:
    """The cores this process may use (``--jobs`` default)."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Budget:
    """What every RL run and evaluation of one comparison (one seed) shares."""

    steps: int = 300
    """RL steps of a method without probe groups; every method gets the same generated-token
    budget: steps × prompts-per-step × group-size × 5 tokens."""
    prompts_per_step: int = 32
    """B: prompts per RL step."""
    group_size: int = 8
    """G: responses per prompt."""
    lr: float = 3e-4
    """Adam learning rate of the RL runs (constant)."""
    n: int = 256
    """Samples per held-out problem in the evaluations (pass@k up to k = n)."""
    limit: int = 0
    """Evaluate on the first N of the 200 held-out problems (0: all)."""
    seed: int = 0
    """Seed of the RL runs and of the evaluation's sampling."""
    base_seed: int = 0
    """Seed of the base model's pretraining."""
    pretrain_steps: int = Recipe().steps
    """Pretraining steps of the base model (the recipe; cached by it)."""

    @property
    def token_budget(self) -> int:
        return self.steps * self.prompts_per_step * self.group_size * TOKENS_PER_RESPONSE

    @property
    def recipe(self) -> Recipe:
        return replace(Recipe(), steps=self.pretrain_steps)

    @property
    def base(self) -> Path:
        """The cached base model's folder (it exists once its build job has run)."""
        return model_dir(self.base_seed, self.recipe)


# --------------------------------------------------------------------------- stages


def run_config(base: Path, method: Method, b: Budget) -> RunConfig:
    """The RunConfig of one method's RL run on the testbed (budget in tokens, not steps)."""
    from agpo.rewards.config import RewardConfig
    from agpo.rollout.config import SamplingConfig
    from agpo.train.config import (
        LogConfig, ModelConfig, OptimConfig, RunConfig, TaskConfig, TrainConfig,
    )

    return RunConfig(
        model=ModelConfig(path=str(base), device="cpu"),
        task=TaskConfig(spec=TASK),
        rollout=SamplingConfig(max_new_tokens=TOKENS_PER_RESPONSE, batch_size=1024),
        reward=RewardConfig(verifier="exact", workers=0),
        algo=method.algo,
        optim=OptimConfig(lr=b.lr, betas=(0.9, 0.99)),
        train=TrainConfig(
            # An upper bound: the token budget ends every run (probe tokens included).
            steps=3 * b.steps,
            token_budget=b.token_budget,
            prompts_per_step=b.prompts_per_step,
            group_size=b.group_size,
            epochs=method.epochs,
            micro_batch_size=b.prompts_per_step * b.group_size,
            seed=b.seed,
            checkpoint_every=max(1, b.steps // CHECKPOINTS_PER_RUN),
            keep_checkpoints=1,
            threads=1,
        ),
        log=LogConfig(progress=False, samples_per_step=1, post_update_stats=True),
    )


def build_base(b: Budget) -> Path:
    """The base model of ``b`` (built once; cached by seed and recipe)."""
    return build_base_model(b.base_seed, b.recipe)


def train_method(name: str, b: Budget, out: Path) -> Path:
    """Train one method into ``out``: skipped when it finished, resumed from its last
    checkpoint when it stopped half-way. Returns the final checkpoint."""
    from agpo.train.checkpoint import latest_checkpoint
    from agpo.train.loop import train

    cfg = run_config(b.base, METHODS[name], b)
    last = latest_checkpoint(out)
    if last is None:
        shutil.rmtree(out, ignore_errors=True)  # killed before its first checkpoint: start over
        train(cfg, out)
    elif not _finished(last, cfg):
        train(cfg, out, resume=True)
    final = latest_checkpoint(out)
    assert final is not None and _finished(final, cfg), f"training into {out} did not finish"
    return final


def _finished(ckpt: Path, cfg: RunConfig) -> bool:
    from agpo.train.limits import checkpoint_stop_reason

    return checkpoint_stop_reason(ckpt, cfg.train) is not None


def evaluate_model(model: Path, out: Path, b: Budget) -> Path:
    """pass@k of one model (a folder, or a run directory: its last checkpoint) on the held-out
    problems at τ = 1; resumed when half-done, and run again when complete too, which samples
    nothing but re-verifies rows whose verifier changed since (as the evidence study does: every
    evaluation of one table is graded by the same verifier). Returns ``out``."""
    from agpo.eval import evaluate
    from agpo.train.checkpoint import latest_checkpoint

    if (model / "metrics.jsonl").exists():  # a run directory
        model = latest_checkpoint(model) or model
    evaluate(
        model, TASK, b.n, out, temperature=1.0, top_p=1.0,
        max_new_tokens=TOKENS_PER_RESPONSE, batch_size=4096, workers=0, seed=b.seed,
        limit=b.limit or None, progress=False,
    )
    return out


def eval_total(b: Budget) -> int:
    """Samples one evaluation writes: problems × n."""
    from agpo.tasks.testbed import TEST_SIZE

    return min(b.limit or TEST_SIZE, TEST_SIZE) * b.n


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One independent piece of work: ``work()`` writes ``out``; it may start once every job
    named in ``after`` is done. ``cost`` (relative seconds, a rough estimate) only orders the
    queue: the longest chain of work starts first."""

    key: str
    label: str
    work: Callable[[], Any]
    out: Path
    after: tuple[str, ...] = ()
    cost: float = 1.0
    total: float | None = None
    """Progress units: tokens of an RL run, samples of an evaluation (None: no bar)."""


def seed_jobs(b: Budget, root: Path, methods: Sequence[str], prefix: str = "") -> list[Job]:
    """Base model, its evaluation, and each method's RL run and evaluation for one seed."""
    build = f"{prefix}base"
    # Costs in seconds on one quiet thread of this kind of machine (measured: pretraining 1000
    # steps ≈ 90 s, a 300-step one-epoch RL run ≈ 35 s, sampling and the update about equal
    # shares of it; an evaluation at n = 256 ≈ 8 s).
    scale = b.steps / 300
    jobs = [
        Job(build, f"{prefix}base model", partial(build_base, b), b.base,
            cost=0.0 if b.base.exists() else 0.09 * b.pretrain_steps),
        Job(f"{prefix}eval_base", f"{prefix}eval base", partial(evaluate_model, b.base,
            root / "eval_base", b), root / "eval_base", (build,), 8 * b.n / 256, eval_total(b)),
    ]
    for name in methods:
        m = METHODS[name]
        run = root / f"run_{name}"
        # A probe group doubles the sampling per step and halves the steps the budget allows.
        probe = 1 if m.algo.uses_probe else 0
        epochs_cost = (1 + probe + m.epochs) / 2 / (1 + probe)
        jobs.append(Job(f"{prefix}run_{name}", f"{prefix}train {m.label}",
                        partial(train_method, name, b, run), run, (build,),
                        35 * scale * epochs_cost, b.token_budget))
        jobs.append(Job(f"{prefix}eval_{name}", f"{prefix}eval {m.label}",
                        partial(evaluate_model, run, root / f"eval_{name}", b),
                        root / f"eval_{name}", (f"{prefix}run_{name}",), 8 * b.n / 256,
                        eval_total(b)))
    return jobs


def _priorities(jobs: Sequence[Job]) -> dict[str, float]:
    """Each job's cost plus its longest chain of dependents (critical-path list scheduling)."""
    after = {j.key: [d for d in jobs if j.key in d.after] for j in jobs}
    memo: dict[str, float] = {}

    def chain(j: Job) -> float:
        if j.key not in memo:
            memo[j.key] = j.cost + max((chain(d) for d in after[j.key]), default=0.0)
        return memo[j.key]

    return {j.key: chain(j) for j in jobs}


def _worker_init(parent: int) -> None:
    import torch
    import transformers

    # Ctrl-C reaches the whole process group: the parent alone handles it (it terminates the
    # workers), instead of every worker printing its own traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # An idle worker ignores SIGTERM too: killed while it waits on the task queue, it would die
    # holding the queue's lock, and the parent's pool.terminate would wait for that lock forever
    # (a SIGTERM to every process, as a job scheduler sends). It ends on the pool's sentinel.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(parent)
    torch.set_num_threads(1)  # one thread per worker: the workers fill the cores
    transformers.utils.logging.disable_progress_bar()


PARENT_POLL_S = 0.5
"""How often a worker without PR_SET_PDEATHSIG (not Linux) checks that its parent lives."""


def die_with_parent(parent: int) -> None:
    """End this worker when process ``parent`` ends, however it ends (kill -9 included).

    A parent killed without a chance to terminate its pool (kill -9, an OOM kill, SIGTERM)
    would otherwise leave the workers training as orphans for minutes, holding their run
    directories' locks, so that the re-run that should resume them is refused. On Linux the
    kernel sends SIGKILL the moment the parent exits (prctl PR_SET_PDEATHSIG); elsewhere, and
    as a second guard, a daemon thread notices the parent is gone (this process is re-parented)
    within ``PARENT_POLL_S``. Killed mid-job is what a resumed job already handles: checkpoints
    and samples are written so that a kill at any point leaves a resumable state.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1  # <linux/prctl.h>
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # gone before the request above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="agpo-parent-watch").start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _call(work: Callable[[], Any]) -> None:
    # SIGTERM (the pool's terminate after Ctrl-C or a failed job, or a stop of every process)
    # stops the job as Ctrl-C stops a command, so that a training first checkpoints the step
    # it stopped in (Run.checkpoint_on_stop).
    idle = signal.signal(signal.SIGTERM, _stop_job)
    try:
        work()
    except KeyboardInterrupt:
        raise SystemExit(1) from None  # stopped: the parent reports it, no traceback per worker
    finally:
        signal.signal(signal.SIGTERM, idle)


def _stop_job(signum: int, frame: FrameType | None) -> None:
    # A stop of every process sends the pool's SIGTERM after the first: it must not cut the
    # checkpoint short (SIGKILL still ends the worker at once).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


@dataclass
class _Display:
    """One rich progress display for every job: a bar per running job, read from the files the
    job writes (metrics.jsonl's token count, samples.jsonl's rows), so jobs in other processes
    need no channel back."""

    bar: Progress
    overall: TaskID
    console: Console
    tasks: dict[str, tuple[Job, TaskID, float]] = field(default_factory=dict)
    lines: dict[Path, tuple[int, int]] = field(default_factory=dict)
    """samples.jsonl → (bytes read, rows counted): each poll reads only what was appended."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, job: Job) -> None:
        with self.lock:
            task = self.bar.add_task(job.label, total=job.total, info="")
            self.tasks[job.key] = (job, task, time.perf_counter())

    def finish(self, job: Job) -> None:
        with self.lock:
            _, task, t0 = self.tasks.pop(job.key)
            self.bar.remove_task(task)
            self.bar.update(self.overall, advance=1, info=job.label)
        if self.bar.live.is_started:
            self.console.log(f"done: {job.label} ({time.perf_counter() - t0:.0f} s)")

    def poll(self) -> None:
        with self.lock:
            for job, task, _ in self.tasks.values():
                if job.total is not None:
                    self.bar.update(task, completed=self._done_units(job))

    def _done_units(self, job: Job) -> float:
        if (job.out / "metrics.jsonl").exists():
            return _last_tokens(job.out / "metrics.jsonl")
        path = job.out / "samples.jsonl"
        if not path.exists():
            return 0.0
        offset, rows = self.lines.get(path, (0, 0))
        with path.open("rb") as f:
            if f.seek(0, os.SEEK_END) < offset:  # cut back by a resume's repair: count again
                offset, rows = 0, 0
            f.seek(offset)
            data = f.read()
        self.lines[path] = (offset + len(data), rows + data.count(b"\n"))
        return float(self.lines[path][1])


def _last_tokens(path: Path) -> float:
    with path.open("rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
        lines = f.read().splitlines()
    for line in reversed(lines):
        try:
            return float(json.loads(line).get("perf/tokens_total", 0.0))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a line being written, or cut by the seek
    return 0.0


def execute(
    jobs: Sequence[Job], workers: int, *, console: Console | None = None, progress: bool = True,
    title: str = "jobs", on_done: Callable[[Job], None] | None = None, keep_order: bool = False,
) -> None:
    """Run ``jobs`` respecting ``after``, at most ``workers`` at a time (1: in this process).

    The longest chain of work starts first (the shortest wall time); with ``keep_order`` the
    jobs start in the order given instead, as soon as what they need is done (partial results
    in a chosen order: the evidence run's claims before the other methods). ``on_done(job)``
    runs here, in this process, after each job. A failing job stops the others (their finished
    work stays on disk; a re-run continues) and its error is raised here.
    """
    console = console or Console()
    prio = _priorities(jobs)
    pending = list(jobs) if keep_order else sorted(jobs, key=lambda j: -prio[j.key])
    done: set[str] = set()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn(
        "{task.percentage:>3.0f}%"), TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, disable=not progress) as bar:
        display = _Display(bar, bar.add_task(title, total=len(jobs), info=""), console)
        stop = threading.Event()
        poller = threading.Thread(target=_poll, args=(display, stop), daemon=True)
        poller.start()
        try:
            if workers <= 1:
                for job in _in_order(pending):
                    display.start(job)
                    job.work()
                    display.finish(job)
                    if on_done is not None:
                        on_done(job)
            else:
                _in_pool(pending, workers, display, done, on_done)
        finally:
            stop.set()
            poller.join()


def _in_order(pending: list[Job]) -> list[Job]:
    """The priority order, with every job after the jobs it needs."""
    order: list[Job] = []
    seen: set[str] = set()
    while pending:
        job = next(j for j in pending if set(j.after) <= seen)
        pending = [j for j in pending if j is not job]
        order.append(job)
        seen.add(job.key)
    return order


def _in_pool(
    pending: list[Job], workers: int, display: _Display, done: set[str],
    on_done: Callable[[Job], None] | None,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(workers, initializer=_worker_init, initargs=(os.getpid(),))
    running: dict[str, tuple[Job, Any]] = {}
    try:
        while pending or running:
            while len(running) < workers and (
                job := next((j for j in pending if set(j.after) <= done), None)
            ):
                pending.remove(job)
                display.start(job)
                running[job.key] = (job, pool.apply_async(_call, (job.work,)))
            time.sleep(0.2)
            for key, (job, result) in list(running.items()):
                if result.ready():
                    result.get()  # re-raises the job's error here
                    del running[key]
                    done.add(key)
                    display.finish(job)
                    if on_done is not None:
                        on_done(job)
        pool.close()
    except BaseException:
        pool.terminate()  # a failed job or Ctrl-C: stop the others; a re-run resumes them
        raise
    finally:
        pool.join()


def _poll(display: _Display, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        display.poll()
