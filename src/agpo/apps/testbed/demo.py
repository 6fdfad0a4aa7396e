"""``agpo demo``: the embedded default — testbed base model, methods compared, report.

Builds (or loads from the cache) the testbed base model, trains each method from it under the
same generated-token budget, evaluates the base model and every trained model at n samples per
held-out problem, and writes a report: pass@k curves of every model (all problems, and beside
them the S niche that only the base model's rare strategy solves), a pass@1 / pass@n table with
S@n, and the training dynamics of the methods on shared axes. The trainings and evaluations run
in ``--jobs`` worker processes (agpo.apps.testbed.runs); see agpo.tasks.testbed for why this task
shows boundary shrinkage. The pieces: methods.py (what is compared), runs.py (the work),
report.py (what is reported).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import transformers
import tyro
from rich.console import Console

from agpo.errors import UserError
from agpo.tasks import testbed as tasks
from agpo.apps.testbed.methods import DEMO_METHODS, METHODS, check_methods, label_of
from agpo.apps.testbed.report import (
    demo_report, steps_taken, summarize_eval, write_plots, write_summary,
)
from agpo.apps.testbed.runs import Budget, default_jobs, execute, seed_jobs


@dataclass(frozen=True)
class DemoConfig(Budget):
    """agpo demo: train the methods on the built-in testbed and compare them with the base."""

    out: Path = Path("agpo_demo")
    """Output folder (base eval, one run + eval per method, report.html, summary.md); an
    interrupted demo re-run with the same folder continues where it stopped."""
    methods: tuple[str, ...] = DEMO_METHODS
    """Methods to train (names: see agpo.apps.testbed.methods.METHODS)."""
    jobs: int = 0
    """Parallel worker processes, one torch thread each (0: the cores available). The results
    do not depend on it."""
    progress: bool = True
    """Show the progress display."""

    def __post_init__(self) -> None:
        check_methods(self.methods)
        if min(self.steps, self.prompts_per_step, self.n) < 1 or self.group_size < 2:
            raise UserError("--steps, --prompts-per-step, --n must be ≥ 1 and --group-size ≥ 2")
        if self.lr <= 0 or self.limit < 0 or self.jobs < 0:
            raise UserError("--lr must be > 0 and --limit, --jobs ≥ 0")

    @property
    def budget(self) -> Budget:
        """The shared budget alone (what the jobs receive)."""
        return Budget(**{f.name: getattr(self, f.name) for f in fields(Budget)})

    @property
    def workers(self) -> int:
        return self.jobs or default_jobs()


def run_demo(cfg: DemoConfig, console: Console | None = None) -> Path:
    """Everything ``agpo demo`` does; returns the summary.md path."""
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()  # one progress display, not one per save
    console = console or Console()
    start = time.perf_counter()
    out, b = cfg.out, cfg.budget
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder for the demo")
    out.mkdir(parents=True, exist_ok=True)
    execute(seed_jobs(b, out, cfg.methods), cfg.workers, console=console, progress=cfg.progress,
            title="demo")
    names = ("base", *cfg.methods)
    evals = [summarize_eval(out / f"eval_{name}", label_of(name)) for name in names]
    runs = {METHODS[m].label: out / f"run_{m}" for m in cfg.methods}
    write_plots(out, evals, runs)
    problems = tasks.load_testbed_add("test", cfg.limit or None)
    notes = {
        "problems": len(problems),
        "s_problems": sum(bool(it.meta["is_s"]) for it in problems),
        "token_budget": b.token_budget,
        "runs": {label: steps_taken(path) for label, path in runs.items()},
        "wall_s": time.perf_counter() - start,
        "jobs": cfg.workers,
        "config": {k: str(v) for k, v in cfg.__dict__.items()},
    }
    summary = write_summary(out, evals, notes)
    intro = (f"<p>Every method trained from the same base model under {b.token_budget:,} "
             f"generated tokens; {notes['problems']} held-out problems ({notes['s_problems']} S), "
             f"n = {cfg.n} samples each at temperature 1. S = problems with a units carry, "
             "solved only by the base model's rare strategy B.</p>")
    demo_report(out, names, {name: label_of(name) for name in names}, intro)
    console.print(summary.read_text())
    console.print(f"report: {out / 'report.html'}; plots: {out / 'passk.png'}, "
                  f"{out / 'training.png'}")
    return summary


def main(argv: list[str]) -> int:
    run_demo(tyro.cli(DemoConfig, args=argv, prog="agpo demo"))
    return 0
