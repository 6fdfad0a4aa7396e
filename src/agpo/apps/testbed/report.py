"""What the demo reports: per-eval summaries (overall and on the S niche), the summary table,
the plots and the HTML report; and the testbed's S niche and strategy-B marker, which its
evidence study (agpo.apps.testbed.evidence) reports too.

One per-problem tally (``agpo.eval.summary.tally``) feeds every number here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agpo.apps.evidence.claims import Counts
from agpo.apps.evidence.claims import load_counts as general_counts
from agpo.eval.passk import pass_at_k_curve, report_ks
from agpo.eval.plots import Curve, colors_for, passk_panels, save_png, training_panels
from agpo.eval.report import TRAINING_PANELS, build_report, load_run, metric_series, moving_average
from agpo.io import dumps_finite, replace_text
from agpo.tasks import testbed as tasks

S_NAME = "S problems (units carry)"


def uses_b(completion: str) -> bool:
    """Whether a completion takes the rare strategy B (the only route to the S niche)."""
    return tasks.strategy_of(completion) == "B"


def load_counts(eval_dir: Path) -> Counts:
    """One pass over samples.jsonl: the tally, and strategy B's share on the side."""
    return general_counts(eval_dir, uses_b)


def s_problem_ids() -> frozenset[str]:
    """Ids of the held-out S problems (units carry: solved only by the rare strategy B)."""
    return frozenset(it.id for it in tasks.load_testbed_add("test") if it.meta["is_s"])


@dataclass
class EvalSummary:
    """What the demo's table needs from one eval: pass@k overall and on S, B's share."""

    label: str
    n: int
    passk: dict[int, float]
    passk_s: dict[int, float]
    share_b: float
    mean_entropy: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


def summarize_eval(eval_dir: Path, label: str) -> EvalSummary:
    """pass@k over all problems and over the S problems, from samples.jsonl."""
    counts = load_counts(eval_dir)
    n, is_s = counts.n, s_problem_ids()
    ks = report_ks(n)

    def curve(pids: Sequence[str]) -> dict[int, float]:
        if not pids:
            return {k: 0.0 for k in ks}
        ts = [counts.tallies[p] for p in pids]
        return pass_at_k_curve([t.n for t in ts], [t.c for t in ts], ks)

    pids = list(counts.tallies)
    passk = json.loads((eval_dir / "passk.json").read_text())
    return EvalSummary(label, n, curve(pids), curve([p for p in pids if p in is_s]),
                       counts.share or 0.0, passk.get("mean_token_entropy"))


def table_ks(n: int) -> list[int]:
    """The demo table's k: 1, 4, 16 (those below n) and n."""
    return [k for k in (1, 4, 16) if k < n] + [n]


def summary_table(evals: Sequence[EvalSummary]) -> str:
    """The demo's markdown table: pass@k, S@1, S@n and strategy B's share per model."""
    n = evals[0].n
    ks = table_ks(n)
    head = "| model | " + " | ".join(f"pass@{k}" for k in ks) + f" | S@1 | S@{n} | share of B |\n"
    head += "|---" * (len(ks) + 4) + "|\n"
    return head + "".join(
        f"| {e.label} | " + " | ".join(f"{e.passk[k]:.3f}" for k in ks)
        + f" | {e.passk_s.get(1, 0.0):.3f} | {e.passk_s.get(n, 0.0):.3f} | {e.share_b:.4f} |\n"
        for e in evals
    )


def write_summary(out: Path, evals: Sequence[EvalSummary], notes: dict[str, Any]) -> Path:
    """summary.md (the table) and summary.json (every number) in ``out``; ``evals[0]`` is the
    base model."""
    lines = [
        "# agpo demo: the built-in testbed", "",
        f"Held-out problems: {notes['problems']} ({notes['s_problems']} S), n = {evals[0].n} "
        f"samples each at temperature 1. Every method trained from the same base model under "
        f"{notes['token_budget']} generated tokens. S = problems with a units carry, solved only "
        "by the base model's rare strategy B.", "", summary_table(evals),
        "", "Runs: " + ", ".join(f"{k}: {v}" for k, v in notes["runs"].items()),
        "", f"Wall time: {notes['wall_s']:.0f} s with {notes['jobs']} parallel job"
        f"{'s' if notes['jobs'] > 1 else ''}", "",
    ]
    (out / "summary.md").write_text("\n".join(lines))
    data = {"notes": notes, "evals": [e.__dict__ for e in evals]}
    replace_text(out / "summary.json", dumps_finite(data, indent=1) + "\n")
    return out / "summary.md"


def steps_taken(run: Path) -> str:
    """"N steps / T tokens" of a finished run."""
    rows = (run / "metrics.jsonl").read_text().splitlines()
    last = json.loads(rows[-1])
    return f"{len(rows)} steps / {int(last['perf/tokens_total'])} tokens"


# --------------------------------------------------------------------------- plots and pages


def _curve(e: EvalSummary, s: bool) -> Curve:
    values = e.passk_s if s else e.passk
    ks = list(values)
    return Curve(e.label, ks, list(values.values()), list(values.values()),
                 list(values.values()))


def write_plots(out: Path, evals: Sequence[EvalSummary], runs: Mapping[str, Path]) -> list[Path]:
    """passk.png (all problems beside the S niche) and training.png (the training dynamics,
    methods overlaid), for the README and for reading without a browser."""
    colors = colors_for([e.label for e in evals])
    panels = [("all held-out problems", [_curve(e, False) for e in evals]),
              (S_NAME, [_curve(e, True) for e in evals])]
    paths = [save_png(passk_panels(panels, colors), out / "passk.png")]
    loaded = [load_run(path, label) for label, path in runs.items()]
    keep = ("token entropy", "all solved (fraction of prompts)",
            "none solved (fraction of prompts)", "positive log-prob increment")

    chosen = []
    for title, keys in TRAINING_PANELS:
        if title in keep:
            series = {r.label: metric_series(r.rows, keys[0], "perf/tokens_total") for r in loaded}
            chosen.append((title, {k: (xs, moving_average(ys, 10)) for k, (xs, ys) in series.items()
                                   if xs}))
    fig = training_panels([c for c in chosen if c[1]], colors, "generated tokens (thousands)")
    paths.append(save_png(fig, out / "training.png"))
    return paths


def demo_report(out: Path, names: Sequence[str], labels: Mapping[str, str], intro: str) -> Path:
    """report.html over the demo's folders (``eval_NAME`` for "base" and each method,
    ``run_NAME`` per method), labelled with the method names, the S niche beside all problems."""
    dirs = [out / f"eval_{name}" for name in names]
    dirs += [out / f"run_{name}" for name in names if name != "base"]
    label_map = {str(d): labels[d.name.split("_", 1)[1]] for d in dirs}
    return build_report(dirs, out / "report.html", labels=label_map,
                        subsets={S_NAME: s_problem_ids()}, title="agpo demo", intro=intro)
