"""The HTML report: curves, tables, training curves, escaped model text; checked in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.errors import UserError
from agpo.eval.bootstrap import bootstrap_ci, mean_ci, per_problem_passk
from agpo.eval.report import build_report
from agpo.eval.report_cli import main as report_main

EVIL = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def _eval_dir(root: Path, name: str, cs: list[int], n: int = 8) -> Path:
    """An eval folder as ``agpo eval`` writes it, problem j having cs[j] correct of n."""
    d = root / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"task": "data/aime24.jsonl", "n": n}))
    (d / "problems.jsonl").write_text("".join(
        json.dumps({"id": f"p{j}", "prompt": f"problem {j} {EVIL}", "gold": "025"}) + "\n"
        for j in range(len(cs))))
    rows = [{"problem_id": f"p{j}", "sample": s, "completion": f"so {EVIL} \\boxed{{{s}}}",
             "parsed": str(s % 3), "correct": s < c, "length": 5 + s, "nll": 0.5}
            for j, c in enumerate(cs) for s in range(n)]
    (d / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def _run_dir(root: Path, name: str = "run", eps: float = 0.0) -> Path:
    """A run folder as ``agpo train`` writes it; clip ε grows by ``eps`` per step (0: constant)."""
    d = root / name
    d.mkdir()
    rows = [{"step": s, "reward/mean": s / 10, "rollout/entropy": 1 - s / 20,
             "reward/all_solved_frac": s / 20, "ctrl/clip_eps": 0.2 + eps * s,
             "rollout/temperature": 1.0, "perf/time_step": 1.0, "perf/tokens_total": 1000 * s}
            for s in range(1, 11)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    base = _eval_dir(root, "base", [8, 4, 1, 0])
    trained = _eval_dir(root, "trained", [8, 8, 0, 0])
    return build_report([base, trained, _run_dir(root)], root / "report.html")


def test_report_is_one_file_with_curves_tables_and_samples(report: Path) -> None:
    text = report.read_text()
    assert text.count("data:image/png;base64,") == 2  # one benchmark plot + one run plot
    assert "<h2>aime24</h2>" in text and "<h2>training dynamics</h2>" in text
    assert "<th>pass@1</th>" in text and "<th>pass@8</th>" in text
    # base: pass@8 = mean(1, 1, 1, 0) = 0.75; trained: mean(1, 1, 0, 0) = 0.5
    assert re.search(r"<th>base</th><td>4</td><td>8</td>(<td>.*?</td>){3}<td>0\.750 ", text)
    assert re.search(r"<th>trained</th><td>4</td><td>8</td>(<td>.*?</td>){3}<td>0\.500 ", text)
    assert "sample viewer" in text


def test_runs_overlaid_with_labels_subset_panel_and_constants_as_text(tmp_path: Path) -> None:
    base = _eval_dir(tmp_path, "eval_base", [8, 4, 1, 0])
    grpo = _eval_dir(tmp_path, "eval_grpo", [8, 8, 0, 0])
    flat, moving = _run_dir(tmp_path, "run_grpo"), _run_dir(tmp_path, "run_adaptive", eps=0.01)
    labels = {str(base): "base", str(grpo): "GRPO", str(flat): "GRPO",
              str(moving): "AGPO-adaptive"}
    out = build_report([base, grpo, flat, moving], tmp_path / "r.html", labels=labels,
                       subsets={"niche <S>": {"p0", "p1"}})
    text = out.read_text()
    # Labels, not folder names, in the tables; one training section for both runs.
    assert "<th>GRPO</th>" in text and "<th>eval_grpo</th>" not in text
    assert text.count("<h2>training dynamics</h2>") == 1
    assert "2 runs: GRPO, AGPO-adaptive." in text
    # The subset's own table, its name escaped: p0, p1 have 8 and 4 of 8 correct (base) →
    # pass@1 = (8/8 + 4/8) / 2 = 0.750, pass@8 = (1 + 1) / 2 = 1.000.
    sub = text.split("<h3>niche &lt;S&gt;</h3>")[1].split("</table>")[0]
    assert re.search(r"<th>base</th><td>2</td><td>8</td><td>0\.750 ", sub)
    assert re.search(r"<th>base</th><td>2</td><td>8</td>(<td>.*?</td>){3}<td>1\.000 ", sub)
    # Temperature is 1.0 in both runs: a line of text, no panel. Clip ε moves in one run: a
    # panel (so it is not in the constant line).
    assert "Constant in every run: temperature 1." in text
    assert "clip ε" not in text.split("Constant in every run:")[1].split("</p>")[0]
    assert text.count("data:image/png;base64,") == 2


def test_constant_panel_lists_each_value() -> None:
    from agpo.eval.report import _constant_text

    series = {"GRPO": ([1.0], [0.2]), "clip-higher": ([1.0], [0.28]), "RLOO": ([1.0], [0.2])}
    assert _constant_text("clip ε", series) == "clip ε 0.2 (GRPO, RLOO), 0.28 (clip-higher)"


def test_mean_ci_is_the_one_column_bootstrap() -> None:
    # pass@1 per problem 1, 0.5, 0.125, 0 → mean 0.40625; the interval is bootstrap_ci's.
    x = np.array([1.0, 0.5, 0.125, 0.0])
    mean, low, high = mean_ci(x, reps=500, seed=3)
    lo, hi = bootstrap_ci(x[:, None], 500, seed=3)
    assert mean == 0.40625 and (low, high) == (lo[0], hi[0]) and low < mean < high


def test_the_table_audits_correct_samples_against_their_golds(report: Path) -> None:
    # The fixture's gold is 025 and its samples answer \boxed{s}: none of the correct ones
    # (13 for base: 8 + 4 + 1 + 0; 16 trained) writes 25, so every one is counted.
    html = report.read_text()
    assert "credited without gold</th>" in html
    assert "<td>13 of 13</td>" in html and "<td>16 of 16</td>" in html


def test_model_text_is_escaped(report: Path) -> None:
    text = report.read_text()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "<script>alert" not in text and "<img src=x" not in text
    assert text.count("<script>") == 1  # only the report's own check script


def test_bootstrap_interval_brackets_the_mean() -> None:
    # 4 problems, n=8: pass@1 per problem = c/8 = 1, 0.5, 0.125, 0 → mean 0.40625
    values = per_problem_passk([8] * 4, [8, 4, 1, 0], [1])
    assert values[:, 0].tolist() == [1.0, 0.5, 0.125, 0.0]
    low, high = bootstrap_ci(values)
    assert low[0] < 0.40625 < high[0]
    # identical problems leave nothing to resample: the interval collapses to the value
    low, high = bootstrap_ci(per_problem_passk([8] * 5, [2] * 5, [1, 2]))
    assert np.allclose(low, [0.25, 1 - 15 / 28]) and np.allclose(high, low)


@settings(deadline=None, derandomize=True, max_examples=25)
@given(st.lists(st.integers(0, 16), min_size=1, max_size=12))
def test_bootstrap_bounds_are_ordered_and_in_range(cs: list[int]) -> None:
    values = per_problem_passk([16] * len(cs), cs, [1, 4, 16])
    low, high = bootstrap_ci(values, reps=200)
    mean = values.mean(axis=0)
    assert np.all(low <= mean + 1e-12) and np.all(mean <= high + 1e-12)
    assert np.all(low >= 0) and np.all(high <= 1)


def test_cli_and_bad_dirs(report: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r.html"
    assert report_main([str(report.parent / "base"), "--out", str(out)]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither an eval directory"):
        build_report([tmp_path / "empty"], out)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
             report.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, dom[:500]
    attrs = dict(re.findall(r'(data-[a-z-]+)="(\d+)"', body.group(0)))
    # the page's own load handler counted: every image decoded, no script error, no injected
    # script from model text
    assert attrs == {"data-images": "2", "data-images-ok": "2", "data-errors": "0",
                     "data-scripts": "1"}


def test_out_never_replaces_a_file_agpo_did_not_write(report: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    from agpo.cli import main as agpo

    base = str(report.parent / "base")
    run = tmp_path / "run"
    run.mkdir()
    config = run / "config.yaml"
    config.write_text("train:\n  steps: 3\n# end of agpo config\n")
    weights = run / "model.safetensors"
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    for victim in (config, weights):
        before = victim.read_bytes()
        assert agpo(["report", base, "--out", str(victim)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out {victim}: exists and is not a report agpo wrote")
        assert err.count("\n") == 1 and "Traceback" not in err
        assert victim.read_bytes() == before
    # A directory: one line, and nothing written into it (no stray temp file).
    assert agpo(["report", base, "--out", str(run)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --out {run}: is a directory")
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "model.safetensors"]
    # A link that points nowhere: refused, the link left as it was.
    link = tmp_path / "dangling.html"
    link.symlink_to(tmp_path / "missing" / "r.html")
    assert agpo(["report", base, "--out", str(link)]) == 2
    assert "is a symbolic link" in capsys.readouterr().err and link.is_symlink()
    # Its own report it replaces, as a re-run of the same command must.
    out = tmp_path / "r.html"
    assert agpo(["report", base, "--out", str(out)]) == 0
    assert agpo(["report", base, "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith("html")) == [
        "dangling.html", "r.html"]


def test_a_report_written_before_the_generator_mark_is_still_replaced(report: Path,
                                                                     tmp_path: Path) -> None:
    from agpo.eval.report import GENERATOR

    old = tmp_path / "old.html"
    old.write_text(report.read_text().replace(GENERATOR, ""))
    build_report([report.parent / "base"], old)
    assert GENERATOR in old.read_text()


def test_dollar_signs_in_names_are_drawn_as_text(tmp_path: Path) -> None:
    # matplotlib reads $...$ as mathtext: "$x^$" and "$\\foo$" do not parse, and would fail
    # the figure (in a legend: two models at least).
    dirs = [_eval_dir(tmp_path, "base $x^$", [8, 4, 1, 0]),
            _eval_dir(tmp_path, "trained $\\foo$", [8, 8, 0, 0]),
            _run_dir(tmp_path, "run $x_$"), _run_dir(tmp_path, "run $\\frac{$", eps=0.01)]
    text = build_report(dirs, tmp_path / "r.html").read_text()
    assert text.count("data:image/png;base64,") == 2 and "base $x^$" in text


def test_damaged_side_files_are_one_line(tmp_path: Path) -> None:
    d = _eval_dir(tmp_path, "e", [8, 4])
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(UserError, match=r"config\.json: expected a JSON object"):
        build_report([d], tmp_path / "r.html")
    (d / "config.json").write_text(json.dumps({"task": "t", "n": 8}))
    lines = (d / "problems.jsonl").read_text().splitlines(keepends=True)
    (d / "problems.jsonl").write_text(lines[0] + lines[1][:9])  # torn by a killed writer
    assert "problem 0" in build_report([d], tmp_path / "r.html").read_text()
    (d / "problems.jsonl").write_text(lines[0][:9] + "\n" + lines[1])  # damaged mid-file
    with pytest.raises(UserError, match=r"problems\.jsonl:1: not valid JSON"):
        build_report([d], tmp_path / "r.html")


def test_repeated_sample_rows_are_counted_once(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    d = _eval_dir(tmp_path, "e", [8, 4])
    samples = d / "samples.jsonl"
    samples.write_text(samples.read_text() * 2)  # the same file appended twice
    text = build_report([d], tmp_path / "r.html").read_text()
    assert re.search(r"<th>e</th><td>2</td><td>8</td>", text)  # n = 8, not 16
    assert "16 row(s) repeat an earlier row" in capsys.readouterr().err
