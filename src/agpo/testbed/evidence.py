"""``agpo testbed evidence``: every method over several seeds, METHODS' claims tested as measured.

Per seed s: the base model pretrained with seed s, every method trained from it with RL seed s
under the same generated-token budget, every model evaluated at n samples per held-out problem.
Intervals are 95% bootstrap intervals over problems within one seed (paired for differences);
seeds are reported one by one, never pooled, because the organism is bimodal (TESTBED.md).
A claim "holds" in a seed by a rule fixed here in advance; the table shows the numbers either way.
Finished runs and evals are reused, so an interrupted evidence run resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import transformers
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from agpo.errors import UserError
from agpo.eval.passk import pass_at_k
from agpo.testbed.build import Recipe, build_base_model
from agpo.testbed.demo import (
    METHODS, DemoConfig, check_methods, evaluate_model, problem_counts, s_flags, train_method,
)

# The methods the claims need come first, so a partial run already tests them.
EVIDENCE_METHODS = (
    "grpo", "agpo_asym", "agpo_adaptive", "asym_pos_only", "asym_neg_only", "asym_grpo",
    "w_reinforce", "dr_grpo", "rloo", "psr", "nsr", "grpo_clip_higher", "grpo_4_epochs",
)


@dataclass(frozen=True)
class EvidenceConfig:
    """agpo testbed evidence: the full comparison over seeds, with 95% intervals."""

    out: Path = Path("agpo_evidence")
    """Output folder (seed_S/{eval_base,run_M,eval_M}, evidence.md, evidence.json)."""
    seeds: int = 3
    """Number of seeds (0, 1, …): each has its own base model and RL runs."""
    methods: tuple[str, ...] = EVIDENCE_METHODS
    """Methods to train (names: see agpo.testbed.demo.METHODS)."""
    steps: int = 300
    """Token budget in RL steps without probe groups (as agpo demo)."""
    n: int = 256
    """Samples per held-out problem."""
    limit: int = 0
    """Evaluate on the first N held-out problems (0: all 200)."""
    bootstrap: int = 1000
    """Bootstrap resamples of the problems."""
    pretrain_steps: int = Recipe().steps
    """Pretraining steps of each seed's base model."""
    progress: bool = True
    """Show the progress display."""

    def __post_init__(self) -> None:
        check_methods(self.methods)
        if self.seeds < 1 or self.bootstrap < 10:
            raise UserError("--seeds must be ≥ 1 and --bootstrap ≥ 10")

    def demo(self, seed: int) -> DemoConfig:
        return DemoConfig(out=self.out / f"seed_{seed}", methods=self.methods, steps=self.steps,
                          n=self.n, limit=self.limit, seed=seed, base_seed=seed,
                          pretrain_steps=self.pretrain_steps, progress=False)


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Scores:
    """Per-problem pass@k values of one model, aligned by problem order ([P] per k)."""

    n: int
    values: dict[int, torch.Tensor]
    s_mask: torch.Tensor
    share_b: float


def load_scores(eval_dir: Path, pids: Sequence[str], ks: Sequence[int]) -> Scores:
    n, correct, share_b = problem_counts(eval_dir)
    is_s = s_flags()
    values = {
        k: torch.tensor([pass_at_k(n, correct[p], k) for p in pids], dtype=torch.float64)
        for k in ks
    }
    return Scores(n, values, torch.tensor([is_s[p] for p in pids]), share_b)


def bootstrap_ci(
    x: torch.Tensor, resamples: int, seed: int, mask: torch.Tensor | None = None
) -> tuple[float, float, float]:
    """(mean, 2.5%, 97.5%) of the mean of per-problem values x [P] over problem resamples.

    Pass a difference of two models' per-problem values for a paired interval.
    """
    if mask is not None:
        x = x[mask]
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, x.numel(), (resamples, x.numel()), generator=gen)  # [R, P]
    means = x[idx].mean(-1)  # [R]
    lo, hi = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=means.dtype)).tolist()
    return float(x.mean()), lo, hi


# --------------------------------------------------------------------------- claims

Verdict = tuple[str, bool] | None
"""(the measured numbers as text, whether the claim holds by its rule); None: not measured."""
Claim = Callable[[dict[str, Scores], dict[str, float], int, int], Verdict]


def _diff(a: Scores, b: Scores, k: int, resamples: int, seed: int) -> tuple[float, float, float]:
    return bootstrap_ci(a.values[k] - b.values[k], resamples, seed)


def _fmt(ci: tuple[float, float, float]) -> str:
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
    "AsymGRPO: β_pos raises entropy, β_neg lowers it": claim_asym_entropy,
    "AGPO-adaptive beats GRPO at equal token budget": claim_adaptive_beats_grpo,
}


def final_entropy(run_dir: Path) -> float:
    """Mean training token entropy over the last 20% of a run's steps."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    tail = [r["rollout/entropy"] for r in rows[-max(1, len(rows) // 5) :] if "rollout/entropy" in r]
    return sum(tail) / max(1, len(tail))


# --------------------------------------------------------------------------- driver


def run_seed(cfg: EvidenceConfig, seed: int, advance: Callable[[str, dict], None]) -> dict:
    """Train and evaluate every method of one seed; ``advance`` gets the partial result after
    each model. Returns that seed's rows and claims."""
    demo = cfg.demo(seed)
    out = demo.out
    base = build_base_model(seed, replace(Recipe(), steps=cfg.pretrain_steps))
    evaluate_model(base, out / "eval_base", demo)
    dirs = {"base": out / "eval_base"}
    ent: dict[str, float] = {}
    advance(f"seed {seed}: base", seed_result(cfg, seed, dirs, ent))
    for name in cfg.methods:
        ckpt = train_method(base, name, demo, out / f"run_{name}")
        evaluate_model(ckpt, out / f"eval_{name}", demo)
        dirs[name] = out / f"eval_{name}"
        ent[name] = final_entropy(out / f"run_{name}")
        advance(f"seed {seed}: {METHODS[name].label}", seed_result(cfg, seed, dirs, ent))
    return seed_result(cfg, seed, dirs, ent)


def seed_result(
    cfg: EvidenceConfig, seed: int, dirs: dict[str, Path], ent: dict[str, float]
) -> dict:
    """Rows (intervals per model) and claims of one seed from its finished evals."""
    n, counts, _ = problem_counts(dirs["base"])
    pids = sorted(counts)
    scores = {name: load_scores(d, pids, (1, n)) for name, d in dirs.items()}
    rows = []
    for name, sc in scores.items():
        label = "base" if name == "base" else METHODS[name].label
        rows.append({
            "seed": seed, "method": name, "label": label,
            "pass@1": bootstrap_ci(sc.values[1], cfg.bootstrap, seed),
            f"pass@{n}": bootstrap_ci(sc.values[n], cfg.bootstrap, seed),
            f"S@{n}": bootstrap_ci(sc.values[n], cfg.bootstrap, seed, sc.s_mask),
            "share_b": sc.share_b, "train_entropy": ent.get(name),
        })
    claims = {}
    for title, fn in CLAIMS.items():
        res = fn(scores, ent, n, cfg.bootstrap)
        if res is not None:
            claims[title] = {"measured": res[0], "holds": res[1]}
    return {"seed": seed, "n": n, "rows": rows, "claims": claims}


def write_tables(out: Path, seeds: Sequence[dict], wall_s: float) -> Path:
    """evidence.md: one table of models per seed, then the claims per seed."""
    n = seeds[0]["n"]
    ci = lambda c: f"{c[0]:.3f} [{c[1]:.3f}, {c[2]:.3f}]"  # noqa: E731
    lines = ["# agpo testbed evidence", "",
             f"95% bootstrap intervals over held-out problems within each seed; n = {n}.", "",
             f"| seed | method | pass@1 | pass@{n} | S@{n} | share of B | train entropy |",
             "|---|---|---|---|---|---|---|"]
    for sd in seeds:
        for r in sd["rows"]:
            ent = "" if r["train_entropy"] is None else f"{r['train_entropy']:.4f}"
            lines.append(f"| {r['seed']} | {r['label']} | {ci(r['pass@1'])} | {ci(r[f'pass@{n}'])} "
                         f"| {ci(r[f'S@{n}'])} | {r['share_b']:.4f} | {ent} |")
    lines += ["", "| claim | seed | measured | holds |", "|---|---|---|---|"]
    for title in CLAIMS:
        for sd in seeds:
            c = sd["claims"].get(title)
            if c is not None:
                holds = "yes" if c["holds"] else "no"
                lines.append(f"| {title} | {sd['seed']} | {c['measured']} | {holds} |")
    lines += ["", f"Wall time: {wall_s:.0f} s", ""]
    (out / "evidence.md").write_text("\n".join(lines))
    (out / "evidence.json").write_text(json.dumps(list(seeds), indent=1) + "\n")
    return out / "evidence.md"


def run_evidence(cfg: EvidenceConfig, console: Console | None = None) -> Path:
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    console = console or Console()
    start = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("[bold]evidence"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))
    seeds = []
    with Progress(*columns, console=console, disable=not cfg.progress) as bar:
        task = bar.add_task("evidence", total=cfg.seeds * (1 + len(cfg.methods)), info="")
        for seed in range(cfg.seeds):

            def advance(info: str, partial: dict) -> None:
                bar.update(task, advance=1, info=info)
                write_tables(cfg.out, [*seeds, partial], time.perf_counter() - start)

            seeds.append(run_seed(cfg, seed, advance))
    path = write_tables(cfg.out, seeds, time.perf_counter() - start)
    console.print(path.read_text())
    return path
