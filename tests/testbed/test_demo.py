"""`agpo demo` end to end on a tiny budget: its report, its flags, and that parallel workers
and an interrupted-then-resumed demo write the same numbers as one sequential run."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

import pytest

from agpo.cli import main as agpo
from agpo.errors import UserError
from agpo.apps.testbed.demo import DemoConfig, run_demo
from agpo.apps.testbed.evidence import EvidenceConfig

TINY = dict(methods=("grpo", "agpo_adaptive"), steps=3, n=8, limit=20, progress=False)


@pytest.fixture(scope="module")
def sequential(testbed_base: Path, testbed_cache: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo run once, in this process (--jobs 1)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AGPO_CACHE", str(testbed_cache))
    try:
        out = tmp_path_factory.mktemp("demo") / "seq"
        run_demo(DemoConfig(out=out, jobs=1, **TINY))
        return out
    finally:
        mp.undo()


def _numbers(out: Path) -> dict:
    """Everything the demo measured, without timings: every eval's summary and every run's
    metrics rows (perf/ keys are wall times; tokens stay)."""
    data = json.loads((out / "summary.json").read_text())
    runs = {}
    for run in sorted(out.glob("run_*")):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        runs[run.name] = [{k: v for k, v in r.items()
                           if not k.startswith("perf/time") and not k.startswith("perf/tokens_per")}
                          for r in rows]
    return {"evals": data["evals"], "runs": runs}


def test_tiny_demo_writes_a_report(sequential: Path) -> None:
    out = sequential
    for name in ("report.html", "passk.png", "training.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "summary.json").read_text())
    assert [e["label"] for e in data["evals"]] == ["base", "GRPO", "AGPO-adaptive"]
    for e in data["evals"]:
        ks = [int(k) for k in e["passk"]]
        assert ks == [1, 2, 4, 8]
        curve = list(e["passk"].values())
        assert curve == sorted(curve)  # pass@k never falls with k
    # Equal generated-token budget: 3 steps × 32 prompts × 8 × 5 tokens = 3,840 each; a run
    # stops at the first step that reaches it, AGPO-adaptive's probe groups included.
    assert data["notes"]["token_budget"] == 3840
    for run in ("run_grpo", "run_agpo_adaptive"):
        last = json.loads((out / run / "metrics.jsonl").read_text().splitlines()[-1])
        assert 3840 * 0.99 <= last["perf/tokens_total"] < 3840 + 2 * 32 * 8 * 5
    assert "| base |" in (out / "summary.md").read_text()
    html = (out / "report.html").read_text()
    # Legends and tables use the method names, and the S niche has its own pass@k panel.
    assert "<th>GRPO</th>" in html and "<th>eval_grpo</th>" not in html
    assert "<h3>S problems (units carry)</h3>" in html
    assert "<h2>training dynamics</h2>" in html


def test_a_finished_evaluation_is_re_verified_when_the_verifier_changed(
    sequential: Path, testbed_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agpo.eval.runner as runner
    from agpo.apps.testbed.runs import evaluate_model

    monkeypatch.setenv("AGPO_CACHE", str(testbed_cache))
    cfg = DemoConfig(out=sequential, **TINY)
    out = shutil.copytree(sequential / "eval_base", tmp_path / "eval_base")
    before = json.loads((out / "passk.json").read_text())
    checks = {k: v["check"] for k, v in json.loads((out / runner.VERIFIED).read_text())["problems"].items()}
    # What a fix to the grader looks like to a finished demo: the same settings, other code. A
    # re-run demo must grade every table row with the verifier of the day, not skip the row.
    monkeypatch.setattr(runner, "verifier_code", lambda: "a fixed grader")
    evaluate_model(cfg.budget.base, out, cfg.budget)
    now = {k: v["check"] for k, v in json.loads((out / runner.VERIFIED).read_text())["problems"].items()}
    assert now.keys() == checks.keys() and all(now[k] != checks[k] for k in now)  # all re-verified
    assert json.loads((out / "passk.json").read_text()) == before  # the same verdicts


def test_two_workers_and_a_resumed_demo_write_the_same_numbers(
    sequential: Path, testbed_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGPO_CACHE", str(testbed_cache))
    out = tmp_path / "par"
    run_demo(DemoConfig(out=out, jobs=2, **TINY))
    expected = _numbers(sequential)
    assert _numbers(out) == expected  # --jobs 2 == --jobs 1, to the last bit

    # Interrupt it: GRPO's run stopped right after its step-2 checkpoint, the base eval with
    # half its samples written (the last one torn) and no passk.json, AGPO-adaptive's eval
    # never started. The re-run resumes each from where it stopped.
    run = out / "run_grpo"
    assert len(list((run / "checkpoints").iterdir())) == 1  # keep_checkpoints 1: the final one
    shutil.rmtree(run)
    _train_until(monkeypatch, DemoConfig(out=out, **TINY), run, stop_at=2)
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_2"]
    samples = out / "eval_base" / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(lines[: len(lines) // 2]) + lines[len(lines) // 2][:7])
    (out / "eval_base" / "passk.json").unlink()
    shutil.rmtree(out / "eval_agpo_adaptive")
    run_demo(DemoConfig(out=out, jobs=2, **TINY))
    assert _numbers(out) == expected


class _Killed(Exception):
    pass


def _train_until(monkeypatch: pytest.MonkeyPatch, cfg: DemoConfig, run: Path,
                 stop_at: int) -> None:
    """Train GRPO into ``run`` and stop it right after its step-``stop_at`` checkpoint, as a
    kill would (the checkpoint is complete on disk; nothing after it is)."""
    from agpo.apps.testbed.runs import train_method
    from agpo.train.state import Run

    save = Run.save

    def save_then_stop(self: Run) -> None:
        save(self)
        if self.step == stop_at:
            raise _Killed

    with monkeypatch.context() as m:
        m.setattr(Run, "save", save_then_stop)
        with pytest.raises(_Killed):
            train_method("grpo", cfg.budget, run)


def test_demo_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        agpo(["demo", "--help"])
    assert e.value.code == 0
    assert "--methods" in capsys.readouterr().out
    assert agpo(["demo", "--methods", "grpo", "nope"]) == 2
    assert "valid names" in capsys.readouterr().err
    assert agpo(["demo", "--jobs", "-1"]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_demo_out_that_is_a_file_is_one_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert agpo(["demo", "--out", str(notes), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"error: --out {notes}: is a file; give a folder for the demo\n"
    assert notes.read_text() == "mine"


def test_evidence_checks_methods_as_demo_does() -> None:
    # One check (methods.check_methods) serves both commands: same rule, same message.
    for bad in (("grpo", "nope"), ()):
        with pytest.raises(UserError) as demo_err:
            DemoConfig(methods=bad)
        with pytest.raises(UserError) as evidence_err:
            EvidenceConfig(methods=bad)
        assert str(evidence_err.value) == str(demo_err.value)
        assert "valid names are grpo, " in str(demo_err.value)


def test_tiny_evidence_tables_and_page(testbed_cache: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from agpo.apps.testbed.evidence import CLAIMS, run_evidence

    monkeypatch.setenv("AGPO_CACHE", str(testbed_cache))
    # Two seeds of a 20-step base model (a recipe of its own: built here in seconds).
    cfg = EvidenceConfig(out=tmp_path / "ev", seeds=2, methods=("grpo", "passk_analytic"),
                         steps=2, n=8, limit=20, bootstrap=50, pretrain_steps=20, jobs=2,
                         progress=False)
    md = run_evidence(cfg).read_text()
    verdicts = md.split("| claim | seed 0 | seed 1 |")[1].split("\n\n")[0]
    # A row per claim that GRPO and Pass@k-analytic test, none for the others.
    for title, claim in CLAIMS.items():
        assert (f"| {title} |" in verdicts) == claim.applies(cfg.methods), title
    assert len([line for line in verdicts.splitlines() if line.startswith("| ")]) == 2
    for measured in ("GRPO shrinks pass@n below base", "Pass@k-analytic keeps pass@n ≥ base"):
        row = verdicts.split(f"| {measured} | ")[1].split("\n")[0]
        assert re.fullmatch(r"(yes|no): pass@8\(.*?\) − base = [+-]\d\.\d{3} \[.*\] \| "
                            r"(yes|no): .* \|", row), row
    data = json.loads((cfg.out / "evidence.json").read_text())
    assert [sd["seed"] for sd in data] == [0, 1]
    assert [r["label"] for r in data[0]["rows"]] == ["base", "GRPO", "Pass@k-analytic (k=4)"]
    for row in data[0]["rows"]:
        mean, low, high = row["pass@1"]
        assert low <= mean <= high
    page = (cfg.out / "evidence.html").read_text()
    # One image of pass@k panels (2 seeds × all/S) and one training figure per seed.
    assert page.count("data:image/png;base64,") == 3
    assert "<h2>verdicts</h2>" in page and "<h2>seed 1</h2>" in page


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_workers_die_with_a_killed_parent_and_the_rerun_resumes(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from scripts.fault_injection import DEMO, alive, children

    # The fault-injection script's demo: its RL run goes on well after its first checkpoint,
    # where the parent is killed, so that orphaned workers would still be training when we look.
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "agpo.cli", *DEMO, "--out", str(out)]
    env = {**os.environ, "AGPO_CACHE": str(tmp_path / "cache")}
    parent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    ckpts = out / "run_grpo" / "checkpoints"
    try:
        deadline = time.monotonic() + 300
        while not (ckpts.is_dir() and any(ckpts.glob("step_*"))):
            assert parent.poll() is None, parent.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
        workers = children(parent.pid)
        assert workers, "the demo runs its jobs in worker processes"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        kept = (out / "run_grpo" / "metrics.jsonl").read_text().splitlines(keepends=True)
        step = int(next(ckpts.glob("step_*")).name[5:])
        gone_by = time.monotonic() + 3
        while any(map(alive, workers)) and time.monotonic() < gone_by:
            time.sleep(0.05)
        orphans = [w for w in workers if alive(w)]
        assert not orphans, f"workers {orphans} outlived their killed parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)  # whatever is left of this test's processes
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "Traceback" not in rerun.stderr
    # Resumed, not restarted: the steps up to the checkpoint are the killed run's own lines
    # (a fresh run would have rewritten them with other wall times).
    again = (out / "run_grpo" / "metrics.jsonl").read_text().splitlines(keepends=True)
    assert again[:step] == kept[:step]
    assert [json.loads(x)["step"] for x in again] == list(range(1, len(again) + 1))
    assert (out / "report.html").exists()
