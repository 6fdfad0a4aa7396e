"""The evidence run's driver and tables: every job of every seed under one progress display,
the verdict and model tables and the pass@k curves rewritten after every evaluation, the page
at the end.

Intervals are 95% bootstrap intervals over problems within one seed (paired for differences);
seeds are reported one by one, never pooled: each seed is its own training run (and, on the
testbed, its own base model), and runs of one method can land in different modes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from rich.console import Console

from agpo.apps.evidence.claims import CLAIMS, Counts, TrainStats, load_counts, scores_of, train_stats
from agpo.apps.evidence.methods import METHODS, label_of
from agpo.apps.evidence.page import evidence_page, passk_plot, seed_curves
from agpo.apps.evidence.study import Study
from agpo.apps.evidence.wallclock import LEDGER, WallClock, describe
from agpo.apps.testbed.runs import Job, default_jobs, execute
from agpo.configs import flatten
from agpo.errors import UserError
from agpo.eval.bootstrap import mean_ci
from agpo.eval.plots import png_bytes
from agpo.io import replace_bytes, replace_text

SETTINGS = "evidence_settings.json"


@dataclass(frozen=True)
class Options:
    """How an evidence run is carried out (none of it changes a number)."""

    out: Path
    bootstrap: int = 1000
    """Bootstrap resamples of the problems."""
    jobs: int = 0
    """Parallel worker processes (0: the cores available)."""
    progress: bool = True


def seed_result(
    study: Study, seed: int, counts: dict[str, Counts], runs: dict[str, TrainStats],
    resamples: int,
) -> dict[str, Any]:
    """Rows (intervals per model) and claims of one seed from its finished evals (``counts``:
    "base" and method names) and trainings (``runs``)."""
    ent = {m: r.entropy for m, r in runs.items() if r.entropy is not None}
    n = counts["base"].n
    pids = sorted(p for p, t in counts["base"].tallies.items() if t.n)
    scores = {name: scores_of(c, pids, (1, n)) for name, c in counts.items()}
    rows = []
    for name, sc in scores.items():
        row: dict[str, Any] = {
            "seed": seed, "method": name, "label": label_of(name),
            "pass@1": mean_ci(sc.values[1], resamples, seed=seed),
            f"pass@{n}": mean_ci(sc.values[n], resamples, seed=seed),
        }
        for short, (_, ids) in study.subsets.items():
            mask = [p in ids for p in pids]
            row[f"{short}@{n}"] = mean_ci(sc.values[n][mask], resamples, seed=seed)
        stats = runs.get(name)
        row.update(share=counts[name].share, audit=counts[name].audit,
                   train_entropy=ent.get(name), steps=stats.steps if stats else 0,
                   tokens=stats.tokens if stats else 0)
        rows.append(row)
    claims = {}
    for title, claim in CLAIMS.items():
        res = claim(scores, ent, n, resamples)
        if res is not None:
            claims[title] = {"measured": res[0], "holds": res[1]}
    return {"seed": seed, "n": n, "rows": rows, "claims": claims}


def tables(study: Study, seeds: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """(the verdict table: claims × seeds, the model table: one row per seed and model)."""
    n = seeds[0]["n"]
    ci = lambda c: f"{c[0]:.3f} [{c[1]:.3f}, {c[2]:.3f}]"  # noqa: E731
    head = "| claim | " + " | ".join(f"seed {sd['seed']}" for sd in seeds) + " |\n"
    verdicts = head + "|---" * (len(seeds) + 1) + "|\n"
    for title in (t for t, claim in CLAIMS.items() if claim.applies(study.methods)):
        cells = []
        for sd in seeds:
            c = sd["claims"].get(title)
            cells.append("–" if c is None else f"{'yes' if c['holds'] else 'no'}: {c['measured']}")
        verdicts += f"| {title} | " + " | ".join(cells) + " |\n"
    subsets = [f"{short}@{n}" for short in study.subsets]
    marker = [f"share of {study.marker[0]}"] if study.marker is not None else []
    # The reward audit where the golds are numbers: correct samples that never write theirs.
    audit = (["credited without gold"]
             if any(r["audit"][1] for sd in seeds for r in sd["rows"]) else [])
    cols = ["seed", "method", "pass@1", f"pass@{n}", *subsets, *marker, *audit, "train entropy",
            "RL steps (tokens)"]
    models = "| " + " | ".join(cols) + " |\n" + "|---" * len(cols) + "|\n"
    for sd in seeds:
        for r in sd["rows"]:
            cells = [str(r["seed"]), r["label"], ci(r["pass@1"]), ci(r[f"pass@{n}"]),
                     *(ci(r[c]) for c in subsets)]
            cells += [f"{r['share']:.4f}"] if marker else []
            cells += [f"{r['audit'][0]:,} of {r['audit'][1]:,}"] if audit else []
            cells.append("" if r["train_entropy"] is None else f"{r['train_entropy']:.4f}")
            cells.append(f"{r['steps']} ({r['tokens']:,})" if r["steps"] else "")
            models += "| " + " | ".join(cells) + " |\n"
    return verdicts, models


def write_tables(study: Study, out: Path, seeds: Sequence[dict[str, Any]],
                 tables_md: tuple[str, str], wall: dict[str, Any]) -> Path:
    """evidence.md (what was compared, the verdicts per seed and every model's intervals:
    ``tables_md``, the wall time of all invocations: ``WallClock.summary()``) and evidence.json
    (every number), each in one atomic write."""
    n = seeds[0]["n"]
    verdicts, models = tables_md
    lines = [f"# {study.title}", "", study.describe(), "",
             f"95% bootstrap intervals over held-out problems within each seed; n = {n}. "
             "A claim holds in a seed by the rule in its docstring (agpo.apps.evidence.claims).",
             "", verdicts, models, describe(wall), ""]
    replace_text(out / "evidence.md", "\n".join(lines))
    replace_text(out / "evidence.json", json.dumps(list(seeds), indent=1) + "\n")
    return out / "evidence.md"


class _Results:
    """What the finished evaluations say so far; the tables after each one."""

    def __init__(self, study: Study, opts: Options, clock: WallClock) -> None:
        self.study, self.opts, self.clock = study, opts, clock
        self.counts: dict[int, dict[str, Counts]] = {s: {} for s in range(study.seeds)}

    def seed_dir(self, seed: int) -> Path:
        return self.opts.out / f"seed_{seed}"

    def done(self, job: Job) -> None:
        seed_part, name = job.key.split("/", 1)
        if name.startswith("eval_"):
            self.counts[int(seed_part.removeprefix("seed_"))][name[5:]] = load_counts(
                job.out, self.study.marker[1] if self.study.marker else None)
            if seeds := self.seeds():
                self.report(seeds, page=False)

    def report(self, seeds: Sequence[dict[str, Any]], *, page: bool) -> Path:
        """evidence.md/json and passk.png from ``seeds`` (``self.seeds()``: the evaluations
        finished so far), and with ``page`` evidence.html (its training plots of every run cost
        seconds: once, at the end); returns evidence.md. Rewritten after each evaluation, a long
        run shows what it has."""
        study, out, wall = self.study, self.opts.out, self.clock.summary()
        tables_md = tables(study, seeds)
        path = write_tables(study, out, seeds, tables_md, wall)
        curves = {sd["seed"]: seed_curves(self.ordered(sd["seed"]), sd["n"], study.subsets)
                  for sd in seeds}
        png = png_bytes(passk_plot(curves))
        replace_bytes(out / "passk.png", png)
        if page:
            runs = {s: {METHODS[m].label: self.seed_dir(s) / f"run_{m}" for m in study.methods}
                    for s in range(study.seeds)}
            replace_text(out / "evidence.html", evidence_page(
                study.title, study.describe(), seeds, curves, png, runs, tables_md, wall))
        return path

    def runs(self, seed: int) -> dict[str, TrainStats]:
        return {m: train_stats(self.seed_dir(seed) / f"run_{m}")
                for m in self.counts[seed] if m != "base"}

    def ordered(self, seed: int) -> dict[str, Counts]:
        """The seed's finished evals, base first, then the methods in --methods order."""
        counts = self.counts[seed]
        return {m: counts[m] for m in ("base", *self.study.methods) if m in counts}

    def seeds(self) -> list[dict[str, Any]]:
        return [seed_result(self.study, seed, self.ordered(seed), self.runs(seed),
                            self.opts.bootstrap)
                for seed in self.counts if "base" in self.counts[seed]]


_ABSENT = object()


def _shown(settings: dict[str, Any], key: str) -> str:
    return json.dumps(settings[key])[:60] if key in settings else "(not set)"


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to continue an evidence run in ``out`` with other settings (its finished runs
    and evals would be mixed with new ones); write them the first time. Adding methods or seeds
    is a continuation, not a change."""
    path = out / SETTINGS
    if path.exists():
        theirs, mine = flatten(json.loads(path.read_text(encoding="utf-8"))), flatten(settings)
        diff = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k, _ABSENT) != theirs.get(k, _ABSENT))
        if diff:
            shown = "; ".join(f"{k}: {_shown(theirs, k)} → {_shown(mine, k)}" for k in diff[:3])
            raise UserError(f"--out {out}: holds an evidence run with other settings ({shown}); "
                            "re-run it with its own settings to continue, or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    replace_text(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")


def run_evidence(study: Study, opts: Options, settings: dict[str, Any],
                 console: Console | None = None) -> Path:
    """Run (or continue) every job of every seed in ``opts.out``, then write evidence.md,
    evidence.json and evidence.html; returns evidence.md. ``settings``: what a continuation
    must share (``check_settings``)."""
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()  # one progress display, not one per load
    console = console or Console()
    untracked = (opts.out / SETTINGS).exists() and not (opts.out / LEDGER).exists()
    check_settings(opts.out, settings)
    workers = opts.jobs or default_jobs()
    with WallClock(opts.out, max(1, workers), untracked=untracked) as clock:
        return _run(study, opts, workers, clock, console)


def _run(study: Study, opts: Options, workers: int, clock: WallClock, console: Console) -> Path:
    per_seed = [study.seed_jobs(seed, opts.out / f"seed_{seed}", f"seed_{seed}/")
                for seed in range(study.seeds)]
    # Job-major order (the base models first, then each method in every seed, in --methods
    # order): a run stopped part-way has every seed of the claims' methods.
    jobs = [job for i in range(max(map(len, per_seed))) for seed_list in per_seed
            for job in seed_list[i: i + 1]]
    results = _Results(study, opts, clock)
    execute(jobs, workers, console=console, progress=opts.progress,
            title="evidence", on_done=results.done, keep_order=True)
    path = results.report(results.seeds(), page=True)
    console.print(path.read_text())
    console.print(f"report: {opts.out / 'evidence.html'}; pass@k curves: {opts.out / 'passk.png'}")
    return path
