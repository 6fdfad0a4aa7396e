"""The HTML report over eval and run directories: one self-contained file.

Eval directories (samples.jsonl, from ``agpo eval`` or anything writing its rows) are grouped by
benchmark; each benchmark gets overlaid pass@k curves with 95% bootstrap intervals over problems
(base against trained is the headline) and a table. Run directories (metrics.jsonl, from
``agpo train``) get training curves of whatever they logged, and their eval/ subfolders join the
benchmarks. A sample viewer shows a few completions per model. Plots are base64 PNG; every piece
of model or dataset text goes through ``html.escape`` (it is untrusted).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agpo.errors import UserError, at
from agpo.eval.bootstrap import bootstrap_ci, per_problem_passk
from agpo.eval.passk import report_ks
from agpo.eval.plots import Curve, passk_figure, training_figure
from agpo.eval.samples import SAMPLES, iter_rows
from agpo.eval.summary import summarize, tally

# Training panels: title → metric keys tried (all present ones are drawn).
TRAINING_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reward", ("reward/mean", "reward/shaped_mean")),
    ("token entropy", ("rollout/entropy",)),
    ("all / none solved", ("reward/all_solved_frac", "reward/none_solved_frac",
                           "reward/all_solved", "reward/none_solved")),
    ("clip ε", ("ctrl/clip_eps", "ctrl/eps")),
    ("temperature", ("ctrl/temperature", "rollout/temperature")),
    ("KL", ("loss/ref_kl", "loss/approx_kl", "ctrl/step_kl")),
    ("response length", ("rollout/response_len",)),
    ("held-out pass@k", ("eval/pass@1", "eval/pass@8", "eval/pass@64", "eval/pass@256")),
)
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
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise at(path, e.lineno, f"not valid JSON ({e.msg})") from None


def _benchmark_name(cfg: dict[str, Any], path: Path) -> str:
    task = str(cfg.get("task") or path.name)
    return Path(task).stem if Path(task).suffix else task


def load_eval(path: Path, label: str) -> EvalDir:
    """Per-problem counts (streamed from samples.jsonl) and metrics of one eval directory."""
    tallies = tally(iter_rows(path / SAMPLES))
    kept = {pid: t for pid, t in tallies.items() if t.n}
    if not kept:
        raise at(path / SAMPLES, None, "no usable samples")
    cfg = _read_json(path / "config.json") if (path / "config.json").exists() else {}
    problems: dict[str, dict[str, Any]] = {}
    if (path / "problems.jsonl").exists():
        for line in (path / "problems.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                problems[str(rec.get("id"))] = rec
    return EvalDir(path, label, _benchmark_name(cfg, path), list(kept),
                   [t.n for t in kept.values()], [t.c for t in kept.values()],
                   summarize(tallies), problems)


def load_run(path: Path, label: str) -> RunDir:
    rows = []
    with (path / "metrics.jsonl").open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise at(path / "metrics.jsonl", lineno, f"not valid JSON ({e.msg})") from None
    return RunDir(path, label, rows)


def discover(dirs: Sequence[Path]) -> tuple[list[EvalDir], list[RunDir]]:
    """Eval dirs (samples.jsonl, also one level down, e.g. RUN/eval/final/) and run dirs."""
    evals: list[tuple[Path, str]] = []
    runs: list[RunDir] = []
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"{d}: not a directory")
        found = False
        if (d / "metrics.jsonl").exists():
            runs.append(load_run(d, d.name))
            found = True
        for sample_file in [d / SAMPLES, *sorted(d.glob(f"*/{SAMPLES}")),
                            *sorted(d.glob(f"eval/*/{SAMPLES}"))]:
            if sample_file.exists():
                sub = sample_file.parent
                evals.append((sub, d.name if sub == d else f"{d.name}/{sub.relative_to(d)}"))
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


def benchmark_section(name: str, evals: Sequence[EvalDir]) -> str:
    """Overlaid pass@k curves (k up to the smallest n among the models) and the table."""
    n_common = min(min(e.ns) for e in evals)
    ks = report_ks(n_common)
    curves, rows = [], []
    for e in evals:
        values = per_problem_passk(e.ns, e.cs, ks)  # [P, K]
        low, high = bootstrap_ci(values)
        mean = values.mean(axis=0)
        curves.append(Curve(e.label, ks, list(mean), list(low), list(high)))
        cells = [f"{m:.3f} <span class=ci>[{lo:.3f}, {hi:.3f}]</span>"
                 for m, lo, hi in zip(mean, low, high)]
        extra = [_fmt(e.metrics.get(k)) for k in
                 ("maj@1", "coverage", "distinct_correct", "mean_length", "mean_token_entropy")]
        rows.append(f"<tr><th>{html.escape(e.label)}</th><td>{len(e.ns)}</td><td>{min(e.ns)}"
                    f"</td>{''.join(f'<td>{c}</td>' for c in cells + extra)}</tr>")
    head = "".join(f"<th>pass@{k}</th>" for k in ks)
    img = passk_figure(f"{name}: pass@k (95% bootstrap CI over problems)", curves)
    return (f"<section><h2>{html.escape(name)}</h2>"
            f"<img alt='pass@k curves for {html.escape(name)}' src='data:image/png;base64,{img}'>"
            f"<div class=scroll><table><tr><th>model</th><th>problems</th><th>n</th>{head}"
            "<th>maj@1</th><th>coverage</th><th>distinct correct</th><th>mean length</th>"
            f"<th>token entropy</th></tr>{''.join(rows)}</table></div></section>")


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for i, row in enumerate(rows):
        v = row.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            steps.append(float(row.get("step", i)))
            values.append(float(v))
    return steps, values


def run_section(run: RunDir) -> str:
    panels = []
    for title, keys in TRAINING_PANELS:
        series = {k: s for k in keys if (s := _series(run.rows, k))[0]}
        if series:
            panels.append((title, series))
    if not panels:
        return (f"<section><h2>run: {html.escape(run.label)}</h2><p>metrics.jsonl has none of "
                "the plotted keys.</p></section>")
    img = training_figure(f"run {run.label}", panels)
    last = run.rows[-1] if run.rows else {}
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(last[k])}</td></tr>"
                    for title, keys in TRAINING_PANELS for k in keys if k in last)
    return (f"<section><h2>run: {html.escape(run.label)}</h2>"
            f"<img alt='training curves of {html.escape(run.label)}' "
            f"src='data:image/png;base64,{img}'><details><summary>last logged step "
            f"({_fmt(last.get('step'))})</summary><table>{cells}</table></details></section>")


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
    for row in iter_rows(e.path / SAMPLES):
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


def render_html(evals: Sequence[EvalDir], runs: Sequence[RunDir]) -> str:
    by_bench: dict[str, list[EvalDir]] = {}
    for e in evals:
        by_bench.setdefault(e.benchmark, []).append(e)
    parts = [benchmark_section(name, group) for name, group in by_bench.items()]
    parts += [run_section(r) for r in runs]
    if evals:
        parts.append("<h2>sample viewer</h2>" + "".join(viewer_section(e) for e in evals))
    sources = ", ".join(html.escape(str(p)) for p in [*(e.path for e in evals),
                                                       *(r.path for r in runs)])
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            "<title>agpo report</title>"
            f"<style>{CSS}</style><script>{CHECK_SCRIPT}</script></head><body>"
            f"<h1>agpo report</h1><p class=meta>from {sources}</p>{''.join(parts)}</body></html>")


def build_report(dirs: Sequence[str | Path], out_html: str | Path) -> Path:
    """Write the report over ``dirs`` (eval and/or run directories) to ``out_html``."""
    evals, runs = discover([Path(d) for d in dirs])
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(render_html(evals, runs), encoding="utf-8")
    tmp.replace(out)
    return out
