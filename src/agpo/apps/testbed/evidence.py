"""``agpo testbed evidence``: every method over several seeds on the built-in testbed — the
testbed's study of the general evidence run (``agpo.apps.evidence``).

Per seed s: the base model pretrained with seed s, every method trained from it with RL seed s
under the same generated-token budget, every model evaluated at n samples per held-out problem,
with the S niche (problems only the rare strategy B solves) beside all problems and B's share of
the samples. Seeds are reported one by one, never pooled, because the organism is bimodal (one
seed's RL re-learns the niche, another's loses it). The claims and their rules are
``agpo.apps.evidence.claims``; the jobs, the tables and the page are the general run's, so an
interrupted evidence run continues where it stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from agpo.apps.evidence.claims import CLAIMS
from agpo.apps.evidence.results import Options
from agpo.apps.evidence.results import run_evidence as run_study
from agpo.apps.testbed.methods import check_methods
from agpo.apps.testbed.report import S_NAME, s_problem_ids, uses_b
from agpo.apps.testbed.runs import Budget, Job, seed_jobs
from agpo.errors import UserError

# The methods the claims need come first, so a partial run already tests them.
EVIDENCE_METHODS = (
    "grpo", "agpo_asym", "passk_analytic", "grpo_passk", "agpo_adaptive", "asym_pos_only",
    "asym_neg_only", "asym_grpo", "w_reinforce", "dr_grpo", "rloo", "psr", "nsr",
    "grpo_clip_higher", "grpo_4_epochs",
)

__all__ = ["CLAIMS", "EVIDENCE_METHODS", "EvidenceConfig", "TestbedStudy", "run_evidence"]


@dataclass(frozen=True)
class EvidenceConfig:
    """agpo testbed evidence: the full comparison over seeds, with 95% intervals."""

    out: Path = Path("agpo_evidence")
    """Output folder (seed_S/{eval_base,run_M,eval_M}, evidence.md, evidence.json,
    evidence.html); re-run with the same folder to continue an interrupted run."""
    seeds: int = 3
    """Number of seeds (0, 1, …): each has its own base model and RL runs."""
    methods: tuple[str, ...] = EVIDENCE_METHODS
    """Methods to train (names: see agpo.apps.evidence.methods.METHODS)."""
    steps: int = 300
    """Token budget in RL steps without probe groups (as agpo demo)."""
    n: int = 256
    """Samples per held-out problem."""
    limit: int = 0
    """Evaluate on the first N held-out problems (0: all 200)."""
    bootstrap: int = 1000
    """Bootstrap resamples of the problems."""
    pretrain_steps: int = Budget().pretrain_steps
    """Pretraining steps of each seed's base model."""
    jobs: int = 0
    """Parallel worker processes, one torch thread each (0: the cores available). The results
    do not depend on it."""
    progress: bool = True
    """Show the progress display."""

    def __post_init__(self) -> None:
        check_methods(self.methods)
        if self.seeds < 1 or self.bootstrap < 10 or self.jobs < 0:
            raise UserError("--seeds must be ≥ 1, --bootstrap ≥ 10 and --jobs ≥ 0")

    def budget(self, seed: int) -> Budget:
        return Budget(steps=self.steps, n=self.n, limit=self.limit, seed=seed, base_seed=seed,
                      pretrain_steps=self.pretrain_steps)


@dataclass(frozen=True)
class TestbedStudy:
    """The testbed as an evidence study: a pretrained base model per seed (agpo.apps.testbed.runs)."""

    cfg: EvidenceConfig
    title: str = "agpo testbed evidence"
    marker: tuple[str, Callable[[str], bool]] | None = ("B", uses_b)

    @property
    def methods(self) -> tuple[str, ...]:
        return self.cfg.methods

    @property
    def seeds(self) -> int:
        return self.cfg.seeds

    @property
    def subsets(self) -> Mapping[str, tuple[str, frozenset[str]]]:
        return {"S": (S_NAME, s_problem_ids())}

    def seed_jobs(self, seed: int, root: Path, prefix: str) -> list[Job]:
        return seed_jobs(self.cfg.budget(seed), root, self.cfg.methods, prefix=prefix)

    def describe(self) -> str:
        b = self.cfg.budget(0)
        return (f"The built-in testbed: per seed a base model pretrained with that seed "
                f"({b.pretrain_steps} steps), every method trained from it under "
                f"{b.token_budget:,} generated tokens, every model evaluated on "
                f"{self.cfg.limit or 200} held-out problems at n = {self.cfg.n}, temperature 1. "
                "S = problems with a units carry, solved only by the base model's rare "
                "strategy B.")


def run_evidence(cfg: EvidenceConfig, console: Console | None = None) -> Path:
    """Everything ``agpo testbed evidence`` does; returns evidence.md."""
    settings: dict[str, Any] = {k: v for k, v in dataclasses.asdict(cfg.budget(0)).items()
                                if k not in ("seed", "base_seed")}
    settings["study"] = TestbedStudy.title
    return run_study(TestbedStudy(cfg), Options(cfg.out, cfg.bootstrap, cfg.jobs, cfg.progress),
                     settings, console)
