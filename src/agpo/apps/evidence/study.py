"""What one evidence run trains and evaluates.

A ``Study`` gives, per seed, the jobs that write ``seed_S/eval_base``, ``seed_S/run_M`` and
``seed_S/eval_M`` (the layout every evidence report reads), the problem subsets drawn beside
all problems, and an optional marker counted over the samples. ``RunStudy`` is the general one:
any model (a folder or a built-in name) and any task, every method trained from the same run
config with its own algo section under the same generated-token budget, every model evaluated
with the same sampling settings on held-out problems. The testbed's study (a base model
pretrained per seed) is ``agpo.apps.testbed.evidence``.

Every job is a function of frozen configs and paths (``spawn`` workers receive nothing read
from a file) and is resumable: a finished training is skipped, a stopped one resumes from its
last checkpoint (``train(resume=True)``), an evaluation from its samples file.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agpo.apps.evidence.methods import METHODS
from agpo.apps.testbed.runs import Job

if TYPE_CHECKING:  # the trainer is imported when a job starts: `agpo evidence --help` stays quick
    from agpo.train.config import RunConfig


class Study(Protocol):
    """One comparison: its methods and seeds, and the jobs of each seed."""

    title: str
    """The report's title."""
    methods: tuple[str, ...]
    seeds: int
    subsets: Mapping[str, tuple[str, frozenset[str]]]
    """Short name → (title, problem ids): a pass@k panel beside all problems and an X@n column."""
    marker: tuple[str, Callable[[str], bool]] | None
    """(name, completion → bool): the share of samples that carry it is reported (None: none)."""

    def seed_jobs(self, seed: int, root: Path, prefix: str) -> list[Job]:
        """The jobs that write ``root``/{eval_base, run_M, eval_M} for ``seed``; every key
        starts with ``prefix``."""
        ...

    def describe(self) -> str:
        """One paragraph on what was compared (markdown and HTML-safe text)."""
        ...


# --------------------------------------------------------------------------- the general study


@dataclass(frozen=True)
class EvalSpec:
    """How every model of a study is evaluated: the same problems, samples and sampling."""

    task: str
    split: str
    n: int
    limit: int
    template: str
    max_new_tokens: int
    temperature: float
    top_p: float
    batch_size: int = 64
    workers: int = 1
    verifier: str = "auto"
    engine: str = "transformers"
    """Who samples (a name in agpo.rollout.ENGINES): the training runs' engine."""
    problems: int = 0
    """How many held-out problems the task gives (for the progress bars; 0: not known)."""

    @property
    def total(self) -> int | None:
        """Samples one evaluation writes (None when the problem count is not known)."""
        return self.problems * self.n or None


@dataclass(frozen=True)
class RunStudy:
    """Methods trained from ``base`` (a run config: model, task, sampling, optimiser, batch
    sizes) with their own algo sections, each under ``base.train.token_budget`` generated
    tokens, and evaluated with ``eval``."""

    base: RunConfig
    eval: EvalSpec
    methods: tuple[str, ...]
    seeds: int = 1
    checkpoint_every: int = 10
    title: str = "agpo evidence"
    subsets: Mapping[str, tuple[str, frozenset[str]]] = dataclasses.field(default_factory=dict)
    marker: tuple[str, Callable[[str], bool]] | None = None

    def run_config(self, method: str, seed: int) -> RunConfig:
        """The run config of one method's training for one seed. One torch thread per job:
        the jobs fill the cores, and a run's numbers do not depend on how many run beside it."""
        m = METHODS[method]
        b = self.base
        return replace(
            b, algo=m.apply(b.algo),
            train=replace(b.train, seed=seed, epochs=m.epochs, threads=1,
                          checkpoint_every=self.checkpoint_every, keep_checkpoints=1),
            log=replace(b.log, progress=False),
        )

    def seed_jobs(self, seed: int, root: Path, prefix: str) -> list[Job]:
        spec = self.eval
        budget = self.base.train.token_budget or None
        jobs = [Job(f"{prefix}eval_base", f"{prefix}eval base",
                    partial(evaluate_to_end, self.base.model.path, root / "eval_base", spec, seed),
                    root / "eval_base", total=spec.total)]
        for name in self.methods:
            run = root / f"run_{name}"
            label = METHODS[name].label
            jobs.append(Job(f"{prefix}run_{name}", f"{prefix}train {label}",
                            partial(train_to_end, self.run_config(name, seed), run), run,
                            total=budget))
            jobs.append(Job(f"{prefix}eval_{name}", f"{prefix}eval {label}",
                            partial(evaluate_to_end, str(run), root / f"eval_{name}", spec, seed),
                            root / f"eval_{name}", (f"{prefix}run_{name}",), total=spec.total))
        return jobs

    def describe(self) -> str:
        b, e = self.base, self.eval
        budget = (f"{b.train.token_budget:,} generated tokens" if b.train.token_budget
                  else f"{b.train.steps} RL steps")
        return (f"Model {b.model.path}, trained on {b.task.spec} ({b.task.split}) with "
                f"{b.train.prompts_per_step} prompts × {b.train.group_size} samples per step, "
                f"lr {b.optim.lr:g}, every method under {budget}; evaluated on {e.task} "
                f"({e.split}{f', first {e.limit}' if e.limit else ''}) at n = {e.n} samples per "
                f"problem, template {e.template}, at most {e.max_new_tokens} new tokens, "
                f"temperature {e.temperature:g}, top-p {e.top_p:g}.")


# --------------------------------------------------------------------------- jobs


def train_to_end(cfg: RunConfig, out: Path) -> Path:
    """Train into ``out``: skipped when finished, resumed from its last checkpoint when it
    stopped half-way, started over when it stopped before its first. Returns ``out``."""
    from agpo.train.checkpoint import latest_checkpoint
    from agpo.train.loop import train

    last = latest_checkpoint(out)
    if last is None:
        shutil.rmtree(out, ignore_errors=True)
        train(cfg, out)
    elif not finished(last, cfg):
        train(cfg, out, resume=True)
    return out


def finished(ckpt: Path, cfg: RunConfig) -> bool:
    """The trainer's own stopping rule read from a checkpoint."""
    from agpo.train.limits import checkpoint_stop_reason

    return checkpoint_stop_reason(ckpt, cfg.train) is not None


def evaluate_to_end(model: str, out: Path, spec: EvalSpec, seed: int) -> Path:
    """``agpo eval`` of ``model`` (a run directory: its last checkpoint) with ``spec``, seeded
    by ``seed``: resumed when half-done, and run again when complete too, which samples nothing
    but re-verifies rows whose verifier changed since (every eval of one report is then graded
    by the same verifier). Returns ``out``."""
    from agpo.eval import evaluate

    evaluate(model, spec.task, spec.n, out, split=spec.split, limit=spec.limit or None,
             template=spec.template, max_new_tokens=spec.max_new_tokens,
             temperature=spec.temperature, top_p=spec.top_p, batch_size=spec.batch_size,
             workers=spec.workers, verifier=spec.verifier, engine=spec.engine, seed=seed,
             progress=False)
    return out


def settings_of(study: Any) -> dict[str, Any]:
    """A study's settings as plain data (what a resumed evidence run must share)."""
    from agpo.train.config import to_dict

    out = {}
    for f in dataclasses.fields(study):
        if f.name not in ("subsets", "marker"):
            v = getattr(study, f.name)
            out[f.name] = to_dict(v) if dataclasses.is_dataclass(v) else v
    # Evaluations sampled with agpo's own sampler before EvalSpec named its engine: a run
    # started then continues, so the default engine is left unsaid.
    if isinstance(out.get("eval"), dict) and out["eval"].get("engine") == "transformers":
        del out["eval"]["engine"]
    return out
