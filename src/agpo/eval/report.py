"""The HTML report over eval and run directories: one self-contained file.

Eval directories (samples.jsonl, from ``agpo eval`` or anything writing its rows) are grouped by
benchmark; each benchmark gets overlaid pass@k curves with 95% bootstrap intervals over problems
(base against trained is the headline), a panel per named subset of problems beside it (e.g. the
testbed's niche), and a table. Run directories (metrics.jsonl, from ``agpo train``) are compared
on shared axes: one panel per training quantity, one line per run; a quantity that is constant in
every run becomes a line of text. Their eval/ subfolders join the benchmarks. A sample viewer
shows a few completions per model. A model keeps its colour in every figure. Plots are base64
PNG; every piece of model or dataset text goes through ``html.escape`` (it is untrusted).
"""

from __future__ import annotations

import html
import math
import os
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agpo.errors import UserError, at
from agpo.eval.bootstrap import bootstrap_ci, per_problem_passk
from agpo.eval.passk import report_ks
from agpo.eval.plots import Curve, Series, colors_for, passk_panels, png_base64, training_panels
from agpo.eval.samples import SAMPLES, SampleKeys, golds_of, iter_rows, read_problems
from agpo.eval.summary import audit_counts, summarize, tally
from agpo.io import load_json, read_metrics, replace_text

# Training panels: title → metric keys tried in order (the first one a run logged is drawn).
TRAINING_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reward", ("reward/mean", "reward/shaped_mean")),
    ("token entropy", ("rollout/entropy",)),
    ("all solved (fraction of prompts)", ("reward/all_solved_frac", "reward/all_solved")),
    ("none solved (fraction of prompts)", ("reward/none_solved_frac", "reward/none_solved")),
    ("positive log-prob increment", ("loss/pos_logprob_delta",)),
    ("clip ε", ("ctrl/clip_eps", "ctrl/eps")),
    ("temperature", ("rollout/temperature", "ctrl/temperature")),
    ("KL to reference", ("loss/ref_kl",)),
    ("approx. KL π_old → π (k3)", ("loss/approx_kl",)),
    ("response length", ("rollout/response_len",)),
    ("held-out pass@1", ("eval/pass@1",)),
)
SMOOTH_POINTS = 60  # training curves are moving averages over len/60 steps: 5 per 300 steps
VIEWER_PROBLEMS = 6
VIEWER_PER_KIND = 2  # correct and incorrect completions shown per problem
TEXT_LIMIT = 2000  # characters of a completion shown; the rest is cut (noted)


@dataclass
class EvalDir:
    path: Path
    label: str
    benchmark: str
    ids: list[str]
    ns: list[int]
    cs: list[int]
    metrics: dict[str, Any]
    problems: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RunDir:
    path: Path
    label: str
    rows: list[dict[str, Any]]


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or a UserError naming the file (and line)."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise at(path, None, f"expected a JSON object (an eval's settings), got "
                             f"{type(data).__name__}")
    return data


def _benchmark_name(cfg: dict[str, Any], path: Path) -> str:
    task = str(cfg.get("task") or path.name)
    return Path(task).stem if Path(task).suffix else task


def load_eval(path: Path, label: str) -> EvalDir:
    """Per-problem counts (streamed from samples.jsonl) and metrics of one eval directory. A row
    repeating an earlier one of its (problem_id, sample) is counted once, with a warning on
    stderr (``agpo.eval.samples.SampleKeys``)."""
    keys = SampleKeys(path / SAMPLES)
    problems = read_problems(path)
    tallies = tally(iter_rows(path / SAMPLES, keys), golds=golds_of(problems))
    if (note := keys.note()) is not None:
        print(f"warning: {note}", file=sys.stderr)
    kept = {pid: t for pid, t in tallies.items() if t.n}
    if not kept:
        raise at(path / SAMPLES, None, "no usable samples")
    cfg = _read_json(path / "config.json") if (path / "config.json").exists() else {}
    return EvalDir(path, label, _benchmark_name(cfg, path), list(kept),
                   [t.n for t in kept.values()], [t.c for t in kept.values()],
                   summarize(tallies), problems)


def load_run(path: Path, label: str) -> RunDir:
    return RunDir(path, label, read_metrics(path / "metrics.jsonl"))  # rows checked: numbers


def discover(
    dirs: Sequence[Path], labels: Mapping[str, str] | None = None,
) -> tuple[list[EvalDir], list[RunDir]]:
    """Eval dirs (samples.jsonl, also one level down, e.g. RUN/eval/final/) and run dirs.

    ``labels`` maps a directory as given (str of the path) to its label in legends and tables;
    without one a directory is labelled by its name.
    """
    labels = labels or {}
    evals: list[tuple[Path, str]] = []
    runs: list[RunDir] = []
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"{d}: not a directory")
        found = False
        name = labels.get(str(d), d.name)
        if (d / "metrics.jsonl").exists():
            runs.append(load_run(d, name))
            found = True
        for sample_file in [d / SAMPLES, *sorted(d.glob(f"*/{SAMPLES}")),
                            *sorted(d.glob(f"eval/*/{SAMPLES}"))]:
            if sample_file.exists():
                sub = sample_file.parent
                evals.append((sub, name if sub == d else f"{name}/{sub.relative_to(d)}"))
                found = True
        if not found:
            raise UserError(f"{d}: neither an eval directory ({SAMPLES}) nor a run directory "
                            "(metrics.jsonl)")
    unique = dict(evals)  # a folder named twice is read once
    clash = {lab for lab in unique.values() if list(unique.values()).count(lab) > 1}
    return [load_eval(p, f"{p.parent.name}/{p.name}" if lab in clash else lab)
            for p, lab in unique.items()], runs


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "–" if math.isnan(x) else f"{x:.3f}"
    return html.escape(str(x)) if x is not None else "–"


def passk_curve(e: EvalDir, ks: Sequence[int], ids: Collection[str] | None = None) -> Curve:
    """Mean pass@k of one eval with its 95% bootstrap interval, over ``ids`` (default all)."""
    keep = [i for i, pid in enumerate(e.ids) if ids is None or pid in ids]
    values = per_problem_passk([e.ns[i] for i in keep], [e.cs[i] for i in keep], ks)  # [P, K]
    low, high = bootstrap_ci(values)
    return Curve(e.label, ks, list(values.mean(axis=0)), list(low), list(high))


def _audit(metrics: dict[str, Any]) -> str:
    """'unwritten of audited' of the reward audit (``agpo.eval.summary``), '–' where none ran."""
    counts = audit_counts(metrics)
    return "–" if counts is None else f"{counts[0]:,} of {counts[1]:,}"


def _passk_table(curves: Sequence[Curve], evals: Sequence[EvalDir], extra: bool) -> str:
    rows = []
    for c, e in zip(curves, evals, strict=True):
        cells = [f"{m:.3f} <span class=ci>[{lo:.3f}, {hi:.3f}]</span>"
                 for m, lo, hi in zip(c.mean, c.low, c.high)]
        more = [_fmt(e.metrics.get(k)) for k in
                ("maj@1", "coverage", "distinct_correct", "mean_length", "mean_token_entropy")]
        more.append(_audit(e.metrics))
        rows.append(f"<tr><th>{html.escape(e.label)}</th><td>{len(e.ns)}</td><td>{min(e.ns)}"
                    f"</td>{''.join(f'<td>{x}</td>' for x in cells + (more if extra else []))}</tr>")
    head = "".join(f"<th>pass@{k}</th>" for k in curves[0].ks)
    if extra:
        head += ("<th>maj@1</th><th>coverage</th><th>distinct correct</th><th>mean length</th>"
                 "<th>token entropy</th><th title='correct samples that never write their "
                 "numeric gold: above 0, read them (a reward hack looks like this)'>credited "
                 "without gold</th>")
    return (f"<div class=scroll><table><tr><th>model</th><th>problems</th><th>n</th>{head}</tr>"
            f"{''.join(rows)}</table></div>")


def benchmark_section(
    name: str, evals: Sequence[EvalDir], colors: Mapping[str, str] | None = None,
    subsets: Mapping[str, Collection[str]] | None = None,
) -> str:
    """Overlaid pass@k curves (k up to the smallest n among the models), each named subset of
    problems in a panel beside them, and the tables."""
    n_common = min(min(e.ns) for e in evals)
    ks = report_ks(n_common)
    curves = [passk_curve(e, ks) for e in evals]
    panels = [(f"all problems ({len(evals[0].ids)})", curves)]
    tables = _passk_table(curves, evals, extra=True)
    for sub, ids in (subsets or {}).items():
        members = [e for e in evals if any(pid in ids for pid in e.ids)]
        if not members:
            continue
        sub_curves = [passk_curve(e, ks, ids) for e in members]
        count = sum(pid in ids for pid in members[0].ids)
        panels.append((f"{sub} ({count})", sub_curves))
        tables += (f"<h3>{html.escape(sub)}</h3>"
                   + _passk_table(sub_curves, [_subset(e, ids) for e in members], extra=False))
    img = png_base64(passk_panels(panels, colors, f"{name}: pass@k (95% bootstrap CI over "
                                                   "problems)", cols=len(panels)))
    return (f"<section><h2>{html.escape(name)}</h2>"
            f"<img alt='pass@k curves for {html.escape(name)}' src='data:image/png;base64,{img}'>"
            f"{tables}</section>")


def _subset(e: EvalDir, ids: Collection[str]) -> EvalDir:
    keep = [i for i, pid in enumerate(e.ids) if pid in ids]
    return EvalDir(e.path, e.label, e.benchmark, [e.ids[i] for i in keep],
                   [e.ns[i] for i in keep], [e.cs[i] for i in keep], e.metrics)


def metric_series(rows: Sequence[dict[str, Any]], key: str, x_key: str | None) -> Series:
    xs, ys = [], []
    for i, row in enumerate(rows):
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            x = row.get(x_key, math.nan) if x_key else row.get("step", i)
            xs.append(float(x) / (1000 if x_key else 1))
            ys.append(float(v))
    return xs, ys


def moving_average(ys: list[float], w: int) -> list[float]:
    """Trailing moving average over ``w`` points (the first points average what exists)."""
    out, acc = [], 0.0
    for i, y in enumerate(ys):
        acc += y - (ys[i - w] if i >= w else 0.0)
        out.append(acc / min(i + 1, w))
    return out


def _constant(values: Sequence[float]) -> bool:
    return max(values) - min(values) <= 1e-6 * max(1.0, abs(values[0]))


def _constant_text(title: str, series: Mapping[str, Series]) -> str:
    by_value: dict[str, list[str]] = {}
    for label, (_, ys) in series.items():
        by_value.setdefault(f"{ys[0]:.4g}", []).append(label)
    if len(by_value) == 1:
        return f"{title} {next(iter(by_value))}"
    return f"{title} " + ", ".join(f"{v} ({', '.join(labs)})" for v, labs in by_value.items())


def runs_section(runs: Sequence[RunDir], colors: Mapping[str, str] | None = None) -> str:
    """Training dynamics of every run on shared axes: a panel per quantity, a line per run.

    The x axis is generated tokens when every run logs them (runs under one token budget but
    with different step counts line up), steps otherwise.
    """
    x_key = ("perf/tokens_total" if all(any("perf/tokens_total" in r for r in run.rows)
                                        for run in runs) else None)
    panels, constant = [], []
    longest = max(len(run.rows) for run in runs)
    w = max(1, longest // SMOOTH_POINTS)
    for title, keys in TRAINING_PANELS:
        series: dict[str, Series] = {}
        for run in runs:
            key = next((k for k in keys if any(k in r for r in run.rows)), None)
            if key is not None and (s := metric_series(run.rows, key, x_key))[0]:
                series[run.label] = s
        if not series:
            continue
        if all(_constant(ys) for _, ys in series.values()):
            constant.append(_constant_text(title, series))
        else:
            panels.append((title, {k: (xs, moving_average(ys, w)) for k, (xs, ys) in series.items()}))
    names = ", ".join(html.escape(r.label) for r in runs)
    text = f"<p>{len(runs)} run{'s' if len(runs) > 1 else ''}: {names}."
    if w > 1:
        text += f" Lines are trailing moving averages over {w} steps."
    if constant:
        text += " Constant in every run: " + html.escape("; ".join(constant)) + "."
    text += "</p>"
    img = ""
    if panels:
        xlabel = "generated tokens (thousands)" if x_key else "step"
        fig = training_panels(panels, colors, xlabel)
        img = (f"<img alt='training curves of {names}' "
               f"src='data:image/png;base64,{png_base64(fig)}'>")
    else:
        text += "<p>metrics.jsonl has none of the plotted keys.</p>"
    keys = [k for _, ks in TRAINING_PANELS for k in ks if any(k in run.rows[-1] for run in runs
                                                             if run.rows)]
    head = "".join(f"<th>{html.escape(r.label)}</th>" for r in runs)
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th>"
        + "".join(f"<td>{_fmt(r.rows[-1].get(k) if r.rows else None)}</td>" for r in runs)
        + "</tr>" for k in ["step", *keys])
    return (f"<section><h2>training dynamics</h2>{text}{img}<details><summary>last logged step "
            f"of each run</summary><div class=scroll><table><tr><th>metric</th>{head}</tr>"
            f"{cells}</table></div></details></section>")


def _completion(row: dict[str, Any]) -> str:
    text = str(row.get("completion", ""))
    cut = len(text) > TEXT_LIMIT
    mark = "✓" if row.get("correct") else "✗"
    parsed = row.get("parsed")
    return (f"<div class='sample {'ok' if row.get('correct') else 'bad'}'><div class=meta>"
            f"{mark} sample {_fmt(row.get('sample'))} · parsed {_fmt(parsed)} · "
            f"{_fmt(row.get('length'))} tokens</div><pre>{html.escape(text[:TEXT_LIMIT])}"
            f"{'…[cut]' if cut else ''}</pre></div>")


def viewer_section(e: EvalDir) -> str:
    """A few correct and incorrect completions of the first problems (streamed, bounded)."""
    chosen = e.ids[:VIEWER_PROBLEMS]
    picked: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for row in iter_rows(e.path / SAMPLES, SampleKeys(e.path / SAMPLES)):
        key = (str(row["problem_id"]), bool(row["correct"]))
        if key[0] in chosen and len(picked.setdefault(key, [])) < VIEWER_PER_KIND:
            picked[key].append(row)
    blocks = []
    for pid in chosen:
        prob = e.problems.get(pid, {})
        opened = " open" if pid == chosen[0] else ""  # one example visible without a click
        i = e.ids.index(pid)
        shown = picked.get((pid, True), []) + picked.get((pid, False), [])
        blocks.append(
            f"<details{opened}><summary>{html.escape(pid)} · {e.cs[i]}/{e.ns[i]} correct · gold "
            f"<code>{_fmt(prob.get('gold'))}</code></summary>"
            f"<pre class=prompt>{html.escape(str(prob.get('prompt', '(prompt not recorded)')))}"
            f"</pre>{''.join(_completion(r) for r in shown)}</details>")
    return (f"<section><h3>samples: {html.escape(e.label)} on {html.escape(e.benchmark)}</h3>"
            f"{''.join(blocks)}</section>")


CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}th{background:#f6f6f6}
.ci{color:#888;font-size:.85em}.scroll{overflow-x:auto}img{max-width:100%}
pre{white-space:pre-wrap;word-break:break-word;background:#f8f8f8;padding:.5em;margin:.2em 0;
font-size:.8em}pre.prompt{background:#eef3fb}.sample.ok pre{border-left:3px solid #2a2}
.sample.bad pre{border-left:3px solid #c33}.meta{font-size:.75em;color:#555}
details{margin:.3em 0}summary{cursor:pointer}
table.text td,table.text th{text-align:left}
"""

# Records, for a headless browser check, how many images decoded and whether any script failed.
CHECK_SCRIPT = """
window.__errors = 0;
window.addEventListener('error', function () { window.__errors += 1; }, true);
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var b = document.body;
  b.setAttribute('data-images', imgs.length);
  b.setAttribute('data-images-ok', ok);
  b.setAttribute('data-errors', window.__errors);
  b.setAttribute('data-scripts', document.scripts.length);
});
"""


GENERATOR = "<meta name=generator content=agpo-report>"
"""In the head of every page agpo writes: what lets ``--out`` replace a report, and nothing
else."""
_LEGACY_MARK = "window.__errors = 0;"  # pages written before GENERATOR existed carry this


def page(title: str, body: str) -> str:
    """A self-contained HTML page: the report's style and its load-check script around ``body``
    (``body`` is HTML already escaped by its writer)."""
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>{GENERATOR}"
            f"<title>{html.escape(title)}</title>"
            f"<style>{CSS}</style><script>{CHECK_SCRIPT}</script></head><body>"
            f"<h1>{html.escape(title)}</h1>{body}</body></html>")


def render_html(
    evals: Sequence[EvalDir], runs: Sequence[RunDir],
    subsets: Mapping[str, Collection[str]] | None = None, title: str = "agpo report",
    intro: str = "",
) -> str:
    """The report's HTML (``intro``: HTML placed before the sections, escaped by its writer)."""
    colors = colors_for([*(e.label for e in evals), *(r.label for r in runs)])
    by_bench: dict[str, list[EvalDir]] = {}
    for e in evals:
        by_bench.setdefault(e.benchmark, []).append(e)
    parts = [benchmark_section(name, group, colors, subsets) for name, group in by_bench.items()]
    if runs:
        parts.append(runs_section(runs, colors))
    if evals:
        parts.append("<h2>sample viewer</h2>" + "".join(viewer_section(e) for e in evals))
    sources = ", ".join(html.escape(str(p)) for p in [*(e.path for e in evals),
                                                       *(r.path for r in runs)])
    return page(title, f"{intro}<p class=meta>from {sources}</p>{''.join(parts)}")


def check_out(out: Path) -> None:
    """``--out`` must be a new file or a report agpo wrote (``GENERATOR`` in its head): the
    rule of ``agpo eval --out``, for one file. Never a directory, a link, or any other file (a
    run's config.yaml, a model's weights), which writing the report would destroy."""
    flag = f"--out {out}"
    if out.is_symlink():
        target = os.readlink(out)
        raise UserError(f"{flag}: is a symbolic link (to {target!r}); give the file itself")
    if out.is_dir():
        raise UserError(f"{flag}: is a directory; give the HTML file to write, e.g. "
                        f"{out / 'report.html'}")
    if not out.exists():
        return
    if not out.is_file():
        raise UserError(f"{flag}: exists and is not a regular file; choose a new file")
    try:
        with out.open("rb") as f:
            head = f.read(8192).decode("utf-8", "replace")
    except OSError as e:
        why = f"exists and cannot be read ({e.strerror}); choose a new file"
        raise UserError(f"{flag}: {why}") from None
    ours = head.startswith("<!DOCTYPE html>") and (GENERATOR in head or _LEGACY_MARK in head)
    if not ours:
        raise UserError(f"{flag}: exists and is not a report agpo wrote; choose a new file (or "
                        "remove this one yourself)")


def build_report(
    dirs: Sequence[str | Path], out_html: str | Path, *, labels: Mapping[str, str] | None = None,
    subsets: Mapping[str, Collection[str]] | None = None, title: str = "agpo report",
    intro: str = "",
) -> Path:
    """Write the report over ``dirs`` (eval and/or run directories) to ``out_html``, which must
    be new or an earlier report (``check_out``: checked before anything is read).

    ``labels``: directory (as given) → label; ``subsets``: name → problem ids, each drawn in a
    pass@k panel of its own beside the all-problems one.
    """
    out = Path(out_html)
    check_out(out)
    evals, runs = discover([Path(d) for d in dirs], labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_text(out, render_html(evals, runs, subsets, title, intro))
    return out
