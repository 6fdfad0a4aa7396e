"""``agpo evidence``: methods × seeds from one base model on one task, under one generated-token
budget, with 95% bootstrap intervals and the claims tested.

    agpo evidence --config configs/evidence/smollm2_arith.yaml
    agpo evidence --model smollm2-135m-instruct --task arith --token-budget 200000 --out ev

Precedence: defaults < --config YAML (fields of EvidenceArgs) < flags. Every method starts from
one run config (``--train-config``, the YAML ``agpo train --config`` reads; ``--model``,
``--task``, ``--template`` and ``--token-budget`` override it) and gets its own algo section
(agpo.apps.evidence.methods). Re-running the same command continues a stopped run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agpo.apps.evidence.methods import check_methods
from agpo.errors import UserError

DEFAULT_METHODS = ("grpo", "agpo_asym", "passk_analytic", "agpo_adaptive", "asym_grpo")
"""The claims' methods, in the order their claims need them."""


@dataclass(frozen=True)
class EvidenceArgs:
    """agpo evidence: compare methods trained from one model on one task, with intervals.
    --config FILE reads these fields from a YAML (flags override it); re-running the same
    command continues a stopped run."""

    out: Path = Path("agpo_evidence")
    """Output folder (seed_S/{eval_base,run_M,eval_M}, evidence.md, evidence.json,
    evidence.html, passk.png, wall_time.json: every invocation's time); re-run with the same
    folder and settings to continue a stopped run."""
    train_config: str = ""
    """A run config YAML (what agpo train --config reads): model, task, template, sampling,
    optimiser, batch sizes, token budget; every method starts from it. '': agpo train's defaults."""
    model: str = ""
    """The base model (a folder or a built-in name); '': the run config's model.path."""
    task: str = ""
    """The training task; '': the run config's task.spec (trained on its task.split)."""
    template: str = ""
    """Prompt template of training and evaluation; '': the run config's task.template."""
    engine: str = ""
    """Who samples, in training and evaluation alike (transformers or vllm, see agpo.rollout.ENGINES);
    '': the run config's rollout.engine. The engines draw different random streams, so a run
    continues only with the engine it started with."""
    eval_task: str = ""
    """The held-out task; '': the training task's --eval-split (a task file has no splits: give
    a held-out file here)."""
    eval_split: str = "test"
    """Split of the held-out task."""
    methods: tuple[str, ...] = DEFAULT_METHODS
    """Methods to train (names: see agpo.apps.evidence.methods.METHODS). Adding one to a
    finished run trains only it."""
    seeds: int = 1
    """Number of seeds (0, 1, …): each its own RL runs and sampling streams."""
    token_budget: int = 0
    """Generated tokens per training run, probe groups included (0: the run config's
    train.token_budget); the run config's train.steps is only a cap."""
    n: int = 256
    """Samples per held-out problem."""
    limit: int = 0
    """Evaluate on the first N held-out problems (0: all)."""
    temperature: float | None = None
    """Evaluation temperature (unset: the training rollouts' --rollout.temperature)."""
    top_p: float | None = None
    """Evaluation top-p (unset: the training rollouts')."""
    max_new_tokens: int | None = None
    """Evaluation token cap (unset: the training rollouts')."""
    eval_batch_size: int = 64
    """Sequences decoded together in an evaluation."""
    checkpoint_every: int = 10
    """Checkpoint every N RL steps: what a stopped training loses at most."""
    bootstrap: int = 1000
    """Bootstrap resamples of the problems."""
    jobs: int = 0
    """Parallel worker processes, one torch thread each (0: the cores available)."""
    progress: bool = True
    """Show the progress display."""

    def __post_init__(self) -> None:
        check_methods(self.methods)
        if self.seeds < 1 or self.bootstrap < 10 or self.jobs < 0 or self.n < 1:
            raise UserError("--seeds and --n must be ≥ 1, --bootstrap ≥ 10 and --jobs ≥ 0")
        if min(self.limit, self.token_budget) < 0 or self.eval_batch_size < 1:
            raise UserError("--limit and --token-budget must be ≥ 0, --eval-batch-size ≥ 1")
        if self.checkpoint_every < 1:
            raise UserError("--checkpoint-every must be ≥ 1 (a stopped run resumes from it)")
        if self.engine:
            from agpo.rollout.engines import require_engine

            require_engine(self.engine, "engine")


def build_study(a: EvidenceArgs) -> Any:
    """The RunStudy of ``a``: the shared run config, the evaluation, the methods."""
    from agpo.apps.evidence.study import EvalSpec, RunStudy
    from agpo.eval.cli import sampling_problem
    from agpo.tasks import load_task
    from agpo.train.config import load_config

    flags = [*(["--model.path", a.model] if a.model else []),
             *(["--task.spec", a.task] if a.task else []),
             *(["--task.template", a.template] if a.template else []),
             *(["--rollout.engine", a.engine] if a.engine else []),
             *(["--train.token-budget", str(a.token_budget)] if a.token_budget else [])]
    base = load_config(a.train_config or None, flags)
    if base.train.token_budget <= 0:
        raise UserError("an evidence run compares methods at one generated-token budget: give "
                        "--token-budget (or train.token_budget in --train-config)")
    eval_task = a.eval_task or base.task.spec
    if eval_task == base.task.spec and _is_file(eval_task):
        raise UserError(f"--task {eval_task}: a task file has no held-out split; give the "
                        "held-out problems as --eval-task FILE")
    # Loaded here once: a bad task stops the run before any job starts, and the bars know sizes.
    problems = len(load_task(eval_task, a.eval_split, limit=a.limit or None))
    if not problems:
        raise UserError(f"--eval-task {eval_task} --eval-split {a.eval_split}: no problems")
    spec = EvalSpec(task=eval_task, split=a.eval_split, n=a.n, limit=a.limit, problems=problems,
                    template=base.task.template,
                    max_new_tokens=a.max_new_tokens or base.rollout.max_new_tokens,
                    temperature=a.temperature if a.temperature is not None else base.rollout.temperature,
                    top_p=a.top_p if a.top_p is not None else base.rollout.top_p,
                    batch_size=a.eval_batch_size, verifier=base.reward.verifier,
                    engine=base.rollout.engine)
    for name in ("max_new_tokens", "temperature", "top_p"):
        if why := sampling_problem(name, getattr(spec, name)):
            raise UserError(f"--{name.replace('_', '-')} {getattr(spec, name)}: {why}")
    return RunStudy(base=base, eval=spec, methods=a.methods, seeds=a.seeds,
                    checkpoint_every=a.checkpoint_every)


def _is_file(spec: str) -> bool:
    from agpo.tasks.base import FILE_SUFFIXES

    return Path(spec).suffix in FILE_SUFFIXES or Path(spec).exists()


def run(a: EvidenceArgs) -> Path:
    """Everything ``agpo evidence`` does; returns evidence.md."""
    from agpo.apps.evidence.results import Options, run_evidence
    from agpo.apps.evidence.study import settings_of
    from agpo.io import DirLock

    study = build_study(a)
    # A continuation may add methods or seeds; anything else would mix two designs in one table.
    settings = {k: v for k, v in settings_of(study).items() if k not in ("methods", "seeds")}
    with DirLock(a.out, "--out"):
        return run_evidence(study, Options(a.out, a.bootstrap, a.jobs, a.progress), settings)


def main(argv: list[str]) -> int:
    import tyro

    from agpo.configs import from_yaml

    config, rest = _pop_config(argv)
    default = from_yaml(config, EvidenceArgs) if config else EvidenceArgs()
    run(tyro.cli(EvidenceArgs, args=rest, default=default, prog="agpo evidence"))
    return 0


def _pop_config(argv: list[str]) -> tuple[str | None, list[str]]:
    """(--config's value, the other arguments): the YAML is the base of the flags."""
    rest, config = [], None
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name == "--config":
            config = value if eq else next(it, "")
            if not config or config.startswith("--"):
                raise UserError("--config needs a value (an evidence YAML)")
        else:
            rest.append(arg)
    return config, rest

