"""evidence.html: the verdict table, the pass@k curves of every model with 95% bootstrap
intervals (one panel per seed, each subset of problems beside it), the model table and each
seed's training dynamics on shared axes. One self-contained file; every text in it is ours
(labels, numbers) or escaped."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from agpo.apps.evidence.claims import Counts
from agpo.apps.evidence.methods import label_of
from agpo.apps.evidence.wallclock import describe
from agpo.eval.passk import report_ks
from agpo.eval.plots import Curve, colors_for, passk_panels
from agpo.eval.report import EvalDir, load_run, page, passk_curve, runs_section


def seed_curves(
    evals: Mapping[str, Counts], n: int, subsets: Mapping[str, tuple[str, frozenset[str]]],
) -> list[tuple[str, list[Curve]]]:
    """The pass@k curves of one seed's models (method name → counts), with intervals: all
    problems, then each subset."""
    ks = report_ks(n)
    panels: list[tuple[str | None, frozenset[str] | None]] = [("all problems", None)]
    panels += [(title, ids) for title, ids in subsets.values()]
    out: list[tuple[str, list[Curve]]] = []
    for title, ids in panels:
        curves = []
        for name, c in evals.items():
            pids = [p for p, t in c.tallies.items() if t.n]
            e = EvalDir(Path(name), label_of(name), "", pids, [c.tallies[p].n for p in pids],
                        [c.tallies[p].c for p in pids], {})
            curves.append(passk_curve(e, ks, ids))
        out.append((str(title), curves))
    return out


def markdown_to_html_table(md: str) -> str:
    """A markdown table of our own (cells are our numbers and labels) as HTML, cells escaped."""
    rows = [r.strip().strip("|").split("|") for r in md.strip().splitlines()]
    head, body = rows[0], rows[2:]
    th = "".join(f"<th>{html.escape(c.strip())}</th>" for c in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>"
                  for r in body)
    return f"<div class=scroll><table class=text><tr>{th}</tr>{trs}</table></div>"


Curves = Mapping[int, Sequence[tuple[str, Sequence[Curve]]]]
"""seed → [(panel title, the pass@k curves of its models)] (``seed_curves`` per seed)."""


def _colors(curves: Curves) -> dict[str, str]:
    return colors_for([c.label for pair in curves.values() for _, cs in pair for c in cs])


def passk_plot(curves: Curves) -> Figure:
    """Every seed's pass@k panels, one row per seed (the page's figure; passk.png)."""
    panels = [(f"seed {s}: {name}", cs) for s, pair in curves.items() for name, cs in pair]
    cols = max(len(pair) for pair in curves.values())
    return passk_panels(panels, _colors(curves), "pass@k per seed (95% bootstrap CI over "
                                                 "problems)", cols=max(2, cols))


def evidence_page(
    title: str, intro: str, seeds: Sequence[Mapping[str, Any]], curves: Curves, passk_png: bytes,
    runs: Mapping[int, Mapping[str, Path]], tables_md: Sequence[str], wall: Mapping[str, Any],
) -> str:
    """The page (see the module docstring); ``passk_png``: ``passk_plot(curves)`` as a PNG file's
    bytes; ``runs``: seed → label → run directory (those without metrics yet are left out);
    ``wall``: ``WallClock.summary()``."""
    colors = _colors(curves)
    img = base64.b64encode(passk_png).decode("ascii")
    verdicts, models = tables_md
    body = (f"<p>{html.escape(intro)}</p>"
            f"<p>{len(seeds)} seed{'s' if len(seeds) > 1 else ''}, each its own RL runs; "
            "intervals are 95% bootstrap intervals over held-out problems within one seed "
            "(paired for differences); seeds are never pooled. A claim holds in a seed by the "
            f"rule fixed in advance in agpo.apps.evidence.claims. {html.escape(describe(wall))}</p>"
            f"<h2>verdicts</h2>{markdown_to_html_table(verdicts)}"
            f"<h2>pass@k</h2><img alt='pass@k per seed' src='data:image/png;base64,{img}'>"
            f"<h2>models</h2>{markdown_to_html_table(models)}")
    for s, seed_runs in runs.items():
        loaded = [load_run(p, label) for label, p in seed_runs.items()
                  if (p / "metrics.jsonl").exists()]
        if loaded:
            body += f"<h2>seed {s}</h2>" + runs_section(loaded, colors).replace(
                "<h2>training dynamics</h2>", "<h3>training dynamics</h3>", 1)
    return page(title, body)
