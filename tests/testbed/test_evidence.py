"""`agpo evidence` (the general evidence run) end to end on the testbed model with a tiny budget:
its tables and page, and a run killed with SIGKILL and started again that ends with the same
numbers as one that ran through."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agpo.apps.evidence.cli import EvidenceArgs, run
from agpo.apps.evidence.claims import CLAIMS
from agpo.errors import UserError

REPO = Path(__file__).resolve().parents[2]
# 4 RL steps of 32 prompts × 8 samples × 5 tokens each, checkpointed every step; 20 held-out
# problems × 8 samples per model.
FLAGS = dict(train_config=str(REPO / "configs" / "testbed_grpo.yaml"),
             methods=("grpo", "passk_analytic"), token_budget=4 * 32 * 8 * 5, n=8, limit=20,
             bootstrap=50, checkpoint_every=1, eval_batch_size=4096)


def _argv(out: Path, model: Path) -> list[str]:
    flags = {**FLAGS, "out": out, "model": model}
    argv = []
    for key, value in flags.items():
        argv += [f"--{key.replace('_', '-')}", *(map(str, value) if isinstance(value, tuple) else [str(value)])]
    return argv


def _numbers(out: Path) -> dict:
    """Every number of the run but wall times: the tables' json and each run's metrics."""
    runs = {}
    for path in sorted(out.glob("seed_*/run_*/metrics.jsonl")):
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        runs[str(path.relative_to(out))] = [
            {k: v for k, v in r.items() if not k.startswith(("perf/time", "perf/tokens_per"))}
            for r in rows]
    return {"evidence": json.loads((out / "evidence.json").read_text()), "runs": runs}


@pytest.fixture(scope="module")
def through(testbed_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny evidence run, uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("evidence") / "through"
    run(EvidenceArgs(out=out, model=str(testbed_base), jobs=1, progress=False, **FLAGS))
    return out


def test_tables_and_page(through: Path) -> None:
    md = (through / "evidence.md").read_text()
    assert md.startswith("# agpo evidence\n\nModel ")
    verdicts = md.split("| claim | seed 0 |")[1].split("\n\n")[0]
    for title, claim in CLAIMS.items():  # the rows of the claims these methods test
        assert (f"| {title} |" in verdicts) == claim.applies(FLAGS["methods"]), title
    assert "| GRPO shrinks pass@n below base | yes: pass@8(GRPO) − base = " in verdicts or \
        "| GRPO shrinks pass@n below base | no: pass@8(GRPO) − base = " in verdicts
    data = json.loads((through / "evidence.json").read_text())
    assert [r["label"] for r in data[0]["rows"]] == ["base", "GRPO", "Pass@k-analytic (k=4)"]
    # The reward audit: the testbed's exact verifier credits only the gold digits themselves,
    # so every correct sample writes its gold and every one of them is audited.
    assert "| credited without gold |" in md
    for row in data[0]["rows"]:
        passk = json.loads((through / "seed_0" / f"eval_{row['method']}" / "passk.json")
                           .read_text())
        correct = round(passk["avg@n"] * passk["num_samples"])
        # (a model with no correct sample has nothing audited: no key in its passk.json)
        assert row["audit"] == [0, correct] == [0, passk.get("credited_audited", 0)], row["method"]
    for row in data[0]["rows"]:
        for key in ("pass@1", "pass@8"):
            mean, low, high = row[key]
            assert low <= mean <= high
    # Equal generated-token budget: each run stops at the first step that reaches it.
    for name in ("grpo", "passk_analytic"):
        last = json.loads((through / "seed_0" / f"run_{name}" / "metrics.jsonl")
                          .read_text().splitlines()[-1])
        assert last["perf/tokens_total"] >= FLAGS["token_budget"]
        cfg = json.loads((through / "seed_0" / f"eval_{name}" / "config.json").read_text())
        # evaluated exactly as the base model: the training rollouts' sampling
        assert (cfg["template"], cfg["max_new_tokens"], cfg["temperature"], cfg["top_p"]) == (
            "plain", 5, 1.0, 1.0)
    page = (through / "evidence.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # the pass@k panel and seed 0's training
    png = (through / "passk.png").read_bytes()  # the pass@k panel as a file, for a README
    assert png.startswith(b"\x89PNG") and base64.b64encode(png).decode() in page
    assert "<h2>verdicts</h2>" in page and "<h2>seed 0</h2>" in page


def test_a_killed_run_continues_to_the_same_numbers(
    through: Path, testbed_base: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "agpo.cli", "evidence", *_argv(out, testbed_base), "--jobs", "1",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    first = out / "seed_0" / "run_grpo" / "checkpoints" / "step_1"
    deadline = time.monotonic() + 600
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-training: nothing gets to clean up
    proc.wait()
    assert first.exists(), proc.stderr.read().decode()[-2000:]
    assert not (out / "seed_0" / "eval_passk_analytic" / "passk.json").exists()
    # what a stopped run shows: the base model's evaluation (the first job) in the tables and
    # curves, no page yet
    interim = (out / "evidence.md").read_text()
    assert "| 0 | base |" in interim and "| 0 | GRPO |" not in interim
    assert (out / "passk.png").read_bytes().startswith(b"\x89PNG")
    assert not (out / "evidence.html").exists()

    again = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert _numbers(out) == _numbers(through)
    # the report's wall time covers both invocations, the killed one to its last refresh
    ledger = json.loads((out / "wall_time.json").read_text())
    assert [i["jobs"] for i in ledger["invocations"]] == [1, 1]
    assert "over 2 invocations" in (out / "evidence.md").read_text()


def test_sigterm_stops_it_as_ctrl_c_does(testbed_base: Path, tmp_path: Path) -> None:
    """`kill PID`: workers ended, the invocation's time written, one line on how to continue."""
    out = tmp_path / "terminated"
    cmd = [sys.executable, "-m", "agpo.cli", "evidence", *_argv(out, testbed_base), "--jobs", "2",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "seed_0" / "run_grpo" / "checkpoints" / "step_1"
    deadline = time.monotonic() + 600
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.terminate()
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted; re-run the same command to continue" in err
    assert "Traceback" not in err and "leaked semaphore" not in err, err[-2000:]
    # written on the way out (the minute's heartbeat alone would still say 0 s on a quick run)
    assert json.loads((out / "wall_time.json").read_text())["invocations"][0]["seconds"] > 0


def test_a_continuation_with_other_settings_is_refused(through: Path, testbed_base: Path) -> None:
    before = (through / "evidence.json").read_bytes()
    # the one differing setting, by its dotted name, both values whole
    with pytest.raises(UserError, match=r"holds an evidence run with other settings \(eval.n: 8 → 16\)"):
        run(EvidenceArgs(out=through, model=str(testbed_base), jobs=1, progress=False,
                         **{**FLAGS, "n": 16}))
    assert (through / "evidence.json").read_bytes() == before
