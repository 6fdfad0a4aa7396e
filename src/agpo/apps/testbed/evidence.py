"""``agpo testbed evidence``: every method over several seeds, METHODS' claims tested as measured.

Per seed s: the base model pretrained with seed s, every method trained from it with RL seed s
under the same generated-token budget, every model evaluated at n samples per held-out problem.
Intervals are 95% bootstrap intervals over problems within one seed (paired for differences);
seeds are reported one by one, never pooled, because the organism is bimodal (TESTBED.md).
A claim "holds" in a seed by a rule fixed here in advance; the table shows the numbers either way.
All trainings and evaluations of all seeds are jobs for ``--jobs`` worker processes
(agpo.apps.testbed.runs); finished ones are reused and half-done ones resume, so an interrupted
evidence run continues where it stopped. The tables are rewritten after every evaluation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from rich.console import Console

from agpo.errors import UserError
from agpo.eval.bootstrap import mean_ci
from agpo.apps.testbed.methods import METHODS, check_methods, label_of
from agpo.apps.testbed.report import Counts, evidence_page, load_counts, s_problem_ids, seed_curves
from agpo.apps.testbed.runs import Budget, Job, default_jobs, execute, seed_jobs

# The methods the claims need come first, so a partial run already tests them.
EVIDENCE_METHODS = (
    "grpo", "agpo_asym", "passk_analytic", "grpo_passk", "agpo_adaptive", "asym_pos_only",
    "asym_neg_only", "asym_grpo", "w_reinforce", "dr_grpo", "rloo", "psr", "nsr",
    "grpo_clip_higher", "grpo_4_epochs",
)


@dataclass(frozen=True)
class EvidenceConfig:
    """agpo testbed evidence: the full comparison over seeds, with 95% intervals."""

    out: Path = Path("agpo_evidence")
    """Output folder (seed_S/{eval_base,run_M,eval_M}, evidence.md, evidence.json,
    evidence.html); re-run with the same folder to continue an interrupted run."""
    seeds: int = 3
    """Number of seeds (0, 1, …): each has its own base model and RL runs."""
    methods: tuple[str, ...] = EVIDENCE_METHODS
    """Methods to train (names: see agpo.apps.testbed.methods.METHODS)."""
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


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Scores:
    """Per-problem pass@k values of one model, aligned by problem order ([P] per k)."""

    n: int
    values: dict[int, np.ndarray]
    s_mask: np.ndarray
    share_b: float


def scores_of(counts: Counts, pids: Sequence[str], ks: Sequence[int]) -> Scores:
    values = counts.values(pids, ks)  # [P, K]
    is_s = s_problem_ids()
    return Scores(counts.n, {k: values[:, i] for i, k in enumerate(ks)},
                  np.array([p in is_s for p in pids]), counts.share_b)


# --------------------------------------------------------------------------- claims

Verdict = tuple[str, bool] | None
"""(the measured numbers as text, whether the claim holds by its rule); None: not measured."""
Claim = Callable[[dict[str, Scores], dict[str, float], int, int], Verdict]
CI = tuple[float, float, float]


def _diff(a: Scores, b: Scores, k: int, resamples: int, seed: int) -> CI:
    return mean_ci(a.values[k] - b.values[k], resamples, seed=seed)


def _fmt(ci: CI) -> str:
    return f"{ci[0]:+.3f} [{ci[1]:+.3f}, {ci[2]:+.3f}]"


def claim_grpo_shrinks(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
    """GRPO's pass@n is below the base model's (paired interval entirely below 0)."""
    if "grpo" not in s:
        return None
    d = _diff(s["grpo"], s["base"], n, r, 1)
    return f"pass@{n}(GRPO) − base = {_fmt(d)}", d[2] < 0


def claim_agpo_asym_keeps(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
    """AGPO-asymmetric raises pass@1 (interval above 0) and keeps pass@n ≥ base (interval of
    the difference reaches 0 or above)."""
    if "agpo_asym" not in s:
        return None
    d1 = _diff(s["agpo_asym"], s["base"], 1, r, 2)
    dn = _diff(s["agpo_asym"], s["base"], n, r, 3)
    text = f"pass@1 − base = {_fmt(d1)}; pass@{n} − base = {_fmt(dn)}"
    return text, d1[1] > 0 and dn[2] >= 0


def claim_passk_keeps(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
    """The analytic pass@k objective keeps pass@n ≥ base (interval of the difference reaches 0
    or above): is the strongest baseline for the boundary claim itself keeping the boundary?"""
    if "passk_analytic" not in s:
        return None
    d = _diff(s["passk_analytic"], s["base"], n, r, 5)
    return f"pass@{n}(Pass@k-analytic) − base = {_fmt(d)}", d[2] >= 0


def _asym_vs(baseline: str, seed: int) -> Claim:
    def claim(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
        if not {"agpo_asym", baseline} <= s.keys():
            return None
        d = _diff(s["agpo_asym"], s[baseline], n, r, seed)
        return f"pass@{n}(AGPO-asymmetric) − {METHODS[baseline].label} = {_fmt(d)}", d[2] >= 0

    claim.__doc__ = (f"AGPO-asymmetric's pass@n is not below {METHODS[baseline].label}'s "
                     "(paired interval of the difference reaches 0 or above).")
    return claim


def claim_asym_entropy(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
    """Raising β_pos (0.5 → 0.9) raises the final training token entropy over GRPO's; raising
    β_neg (0.5 → 0.75) lowers it (point estimates: the mean over the last 20% of steps)."""
    if not {"grpo", "asym_pos_only", "asym_neg_only"} <= ent.keys():
        return None
    g, p, q = ent["grpo"], ent["asym_pos_only"], ent["asym_neg_only"]
    text = f"entropy GRPO {g:.4f}, β+ 0.9: {p:.4f}, β− 0.75: {q:.4f}"
    return text, p > g > q


def claim_adaptive_beats_grpo(
    s: dict[str, Scores], ent: dict[str, float], n: int, r: int
) -> Verdict:
    """AGPO-adaptive's pass@1 exceeds GRPO's at the same token budget (interval above 0)."""
    if not {"grpo", "agpo_adaptive"} <= s.keys():
        return None
    d = _diff(s["agpo_adaptive"], s["grpo"], 1, r, 4)
    return f"pass@1(AGPO-adaptive) − GRPO = {_fmt(d)}", d[1] > 0


CLAIMS: dict[str, Claim] = {
    "GRPO shrinks pass@n below base": claim_grpo_shrinks,
    "AGPO-asymmetric keeps pass@n ≥ base while raising pass@1": claim_agpo_asym_keeps,
    "Pass@k-analytic keeps pass@n ≥ base": claim_passk_keeps,
    "AGPO-asymmetric's pass@n not below Pass@k-analytic's": _asym_vs("passk_analytic", 6),
    "AGPO-asymmetric's pass@n not below GRPO-pass@k's": _asym_vs("grpo_passk", 7),
    "AsymGRPO: β_pos raises entropy, β_neg lowers it": claim_asym_entropy,
    "AGPO-adaptive beats GRPO at equal token budget": claim_adaptive_beats_grpo,
}


def final_entropy(run_dir: Path) -> float:
    """Mean training token entropy over the last 20% of a run's steps."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    tail = [r["rollout/entropy"] for r in rows[-max(1, len(rows) // 5) :] if "rollout/entropy" in r]
    return sum(tail) / max(1, len(tail))


# --------------------------------------------------------------------------- tables


def seed_result(
    cfg: EvidenceConfig, seed: int, counts: dict[str, Counts], ent: dict[str, float]
) -> dict:
    """Rows (intervals per model) and claims of one seed from its finished evals (``counts``:
    "base" and method names)."""
    n = counts["base"].n
    pids = sorted(counts["base"].tallies)
    scores = {name: scores_of(c, pids, (1, n)) for name, c in counts.items()}
    rows = []
    r = cfg.bootstrap
    for name, sc in scores.items():
        rows.append({
            "seed": seed, "method": name, "label": label_of(name),
            "pass@1": mean_ci(sc.values[1], r, seed=seed),
            f"pass@{n}": mean_ci(sc.values[n], r, seed=seed),
            f"S@{n}": mean_ci(sc.values[n][sc.s_mask], r, seed=seed),
            "share_b": sc.share_b, "train_entropy": ent.get(name),
        })
    claims = {}
    for title, fn in CLAIMS.items():
        res = fn(scores, ent, n, r)
        if res is not None:
            claims[title] = {"measured": res[0], "holds": res[1]}
    return {"seed": seed, "n": n, "rows": rows, "claims": claims}


def tables(seeds: Sequence[dict]) -> tuple[str, str]:
    """(the verdict table: claims × seeds, the model table: one row per seed and model)."""
    n = seeds[0]["n"]
    ci = lambda c: f"{c[0]:.3f} [{c[1]:.3f}, {c[2]:.3f}]"  # noqa: E731
    head = "| claim | " + " | ".join(f"seed {sd['seed']}" for sd in seeds) + " |\n"
    verdicts = head + "|---" * (len(seeds) + 1) + "|\n"
    for title in CLAIMS:
        cells = []
        for sd in seeds:
            c = sd["claims"].get(title)
            cells.append("–" if c is None else
                         f"{'yes' if c['holds'] else 'no'}: {c['measured']}")
        verdicts += f"| {title} | " + " | ".join(cells) + " |\n"
    models = (f"| seed | method | pass@1 | pass@{n} | S@{n} | share of B | train entropy |\n"
              "|---|---|---|---|---|---|---|\n")
    for sd in seeds:
        for r in sd["rows"]:
            ent = "" if r["train_entropy"] is None else f"{r['train_entropy']:.4f}"
            models += (f"| {r['seed']} | {r['label']} | {ci(r['pass@1'])} | "
                       f"{ci(r[f'pass@{n}'])} | {ci(r[f'S@{n}'])} | {r['share_b']:.4f} | {ent} |\n")
    return verdicts, models


def write_tables(out: Path, seeds: Sequence[dict], wall_s: float) -> Path:
    """evidence.md (the verdicts per seed, then every model's intervals) and evidence.json."""
    n = seeds[0]["n"]
    verdicts, models = tables(seeds)
    lines = ["# agpo testbed evidence", "",
             f"95% bootstrap intervals over held-out problems within each seed; n = {n}. "
             "A claim holds in a seed by the rule in its docstring (agpo.apps.testbed.evidence).", "",
             verdicts, models, f"Wall time: {wall_s:.0f} s", ""]
    (out / "evidence.md").write_text("\n".join(lines))
    (out / "evidence.json").write_text(json.dumps(list(seeds), indent=1) + "\n")
    return out / "evidence.md"


# --------------------------------------------------------------------------- driver


class _Results:
    """What the finished evaluations say so far; the tables after each one."""

    def __init__(self, cfg: EvidenceConfig, start: float) -> None:
        self.cfg, self.start = cfg, start
        self.counts: dict[int, dict[str, Counts]] = {s: {} for s in range(cfg.seeds)}

    def seed_dir(self, seed: int) -> Path:
        return self.cfg.out / f"seed_{seed}"

    def done(self, job: Job) -> None:
        seed_part, name = job.key.split("/", 1)
        if name.startswith("eval_"):
            self.counts[int(seed_part[5:])][name[5:]] = load_counts(job.out)
            if self.seeds():
                write_tables(self.cfg.out, self.seeds(), time.perf_counter() - self.start)

    def entropies(self, seed: int) -> dict[str, float]:
        return {m: final_entropy(self.seed_dir(seed) / f"run_{m}")
                for m in self.counts[seed] if m != "base"}

    def ordered(self, seed: int) -> dict[str, Counts]:
        """The seed's finished evals, base first, then the methods in --methods order."""
        counts = self.counts[seed]
        return {m: counts[m] for m in ("base", *self.cfg.methods) if m in counts}

    def seeds(self) -> list[dict]:
        return [seed_result(self.cfg, seed, self.ordered(seed), self.entropies(seed))
                for seed in self.counts if "base" in self.counts[seed]]


def run_evidence(cfg: EvidenceConfig, console: Console | None = None) -> Path:
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    console = console or Console()
    start = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    per_seed = [seed_jobs(cfg.budget(seed), cfg.out / f"seed_{seed}", cfg.methods,
                          prefix=f"seed_{seed}/") for seed in range(cfg.seeds)]
    # Method-major order (the base models first, then each method in every seed, in --methods
    # order): a run stopped part-way has every seed of the claims' methods.
    jobs = [job for i in range(len(per_seed[0])) for seed_list in per_seed
            for job in seed_list[i : i + 1]]
    results = _Results(cfg, start)
    workers = cfg.jobs or default_jobs()
    execute(jobs, workers, console=console, progress=cfg.progress, title="evidence",
            on_done=results.done, keep_order=True)
    seeds = results.seeds()
    wall = time.perf_counter() - start
    path = write_tables(cfg.out, seeds, wall)
    curves = {sd["seed"]: seed_curves(results.ordered(sd["seed"]), sd["n"]) for sd in seeds}
    runs = {s: {METHODS[m].label: results.seed_dir(s) / f"run_{m}" for m in cfg.methods}
            for s in range(cfg.seeds)}
    (cfg.out / "evidence.html").write_text(
        evidence_page(seeds, curves, runs, tables(seeds), wall), encoding="utf-8")
    console.print(path.read_text())
    console.print(f"report: {cfg.out / 'evidence.html'}")
    return path
