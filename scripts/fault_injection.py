"""Fault injection through the `agpo` commands: kill -9, a truncated checkpoint, two concurrent
resumes and a diverging (NaN) run of `agpo train`; a killed `agpo demo` parent (its workers must
die with it and the re-run resume); a task file edited between two runs of one `agpo eval`
(passk.json must never count the old gold); `agpo report --out` aimed at a run's files. The
training and eval scenarios run on the random `tiny` model with a one-character task in seconds;
the demo one trains the testbed briefly (about a minute). Each prints what held.

    python scripts/fault_injection.py [--keep DIR] [--only NAME ...]

Exit status 0 when every check held. Runs in a temporary folder (kept with --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

FLAGS = [
    "--model.path", "tiny", "--reward.verifier", "exact", "--reward.workers", "0",
    "--rollout.max-new-tokens", "2", "--train.prompts-per-step", "4", "--train.group-size", "4",
    "--train.threads", "1", "--optim.lr", "1e-2", "--log.no-progress", "--train.keep-checkpoints", "0",
    "--train.checkpoint-every", "2", "--algo.advantage", "grpo",
]


def agpo(*args: str, wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    return command("train", *args, wait=wait)


def command(*args: str, wait: bool = True, **popen: object) -> subprocess.CompletedProcess | subprocess.Popen:
    """``agpo ARGS`` in a fresh process (``popen``: extra Popen/run arguments, e.g. env)."""
    cmd = [sys.executable, "-m", "agpo.cli", *args]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, **popen)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def comparable(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("perf/time")} for r in rows]


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def last_line(text: str, containing: str = "") -> str:
    """The last non-blank stderr line (that contains ``containing``): agpo's one-line message."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and containing in ln]
    return lines[-1] if lines else ""


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, bool]] = []

    def check(self, scenario: str, what: str, held: bool) -> None:
        self.rows.append((scenario, what, held))
        print(f"{'held  ' if held else 'BROKEN'}  {scenario:<18} {what}", flush=True)


def train_scenarios(root: Path, rep: Report, flags: list[str]) -> None:
    """kill -9 and resume, a truncated checkpoint, two concurrent resumes, NaN."""
    steps = 12
    # The reference: one uninterrupted run.
    full = root / "full"
    done = agpo("--out", str(full), *flags, "--train.steps", str(steps))
    rep.check("reference", f"uninterrupted run of {steps} steps exits 0", done.returncode == 0)
    final = f"step_{steps}"

    # 1. kill -9 mid-run, then --resume: the same weights and metrics as uninterrupted.
    killed = root / "killed"
    proc = agpo("--out", str(killed), *flags, "--train.steps", str(steps), wait=False)
    while proc.poll() is None and not (killed / "checkpoints" / "step_4").is_dir():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    was_killed = proc.returncode == -signal.SIGKILL
    res = agpo("--resume", str(killed))
    rep.check("kill -9", f"killed mid-run ({'yes' if was_killed else 'finished first'}), resume exits 0",
              res.returncode == 0)
    rep.check("kill -9", "resumed weights == uninterrupted",
              res.returncode == 0 and same_weights(full / "checkpoints" / final, killed / "checkpoints" / final))
    rep.check("kill -9", "resumed metrics == uninterrupted (perf/time* aside)",
              res.returncode == 0 and comparable(killed) == comparable(full))

    # 2. A truncated newest checkpoint: resume falls back to the newest intact one, says so.
    cut = root / "truncated"
    shutil.copytree(full, cut)
    for name in (final, f"step_{steps - 1}"):
        shutil.rmtree(cut / "checkpoints" / name, ignore_errors=True)
    newest = max((cut / "checkpoints").iterdir(), key=lambda p: int(p.name[5:]))
    model = newest / "model.safetensors"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 3])
    res = agpo("--resume", str(cut))
    rep.check("truncate", f"resume exits 0, warns: {last_line(res.stderr, 'warning')[:90]!r}",
              res.returncode == 0 and "newest intact checkpoint" in res.stderr and "Traceback" not in res.stderr)
    rep.check("truncate", "weights == uninterrupted after the redone steps",
              res.returncode == 0 and same_weights(full / "checkpoints" / final, cut / "checkpoints" / final))

    # 3. Two concurrent --resume of one run: one is refused, no step is written twice.
    both = root / "concurrent"
    shutil.copytree(full, both)
    procs = [agpo("--resume", str(both), "--train.steps", str(steps + 8), wait=False) for _ in range(2)]
    outs = [(p.wait(), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in outs)
    refusal = next((last_line(e, "error") for c, e in outs if c != 0), "")
    rep.check("concurrent resume", f"exit codes {codes}; refused: {refusal[:80]!r}",
              codes == [0, 2] and "another agpo process" in refusal)
    stepped = [r["step"] for r in comparable(both)]
    rep.check("concurrent resume", "metrics.jsonl has each step once",
              stepped == list(range(1, steps + 9)))

    # 4. NaN: a learning rate that diverges; the run stops non-zero, JSON stays JSON.
    nan = root / "nan"
    res = agpo("--out", str(nan), *flags, "--train.steps", "20", "--optim.lr", "1e30",
               "--optim.grad-clip", "0", "--algo.advantage", "reinforce", "--train.checkpoint-every", "1")
    rep.check("NaN", f"exit {res.returncode}: {last_line(res.stderr, 'error')[:90]!r}",
              res.returncode == 2 and "NaN/inf" in res.stderr and "Traceback" not in res.stderr)

    def strict(line: str) -> dict:
        return json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))

    try:
        rows = [strict(x) for x in (nan / "metrics.jsonl").read_text().splitlines()]
        ok_json = bool(rows)
    except (ValueError, OSError):
        rows, ok_json = [], False
    rep.check("NaN", f"metrics.jsonl is strict JSON ({len(rows)} rows, skipped steps "
                     f"{sum(r.get('loss/skipped_steps', 0) for r in rows):.0f})", ok_json)
    ckpts = sorted((nan / "checkpoints").glob("step_*")) if (nan / "checkpoints").is_dir() else []
    finite = all(torch.isfinite(t).all() for c in ckpts for t in load_file(str(c / "model.safetensors")).values())
    rep.check("NaN", f"every checkpoint's weights are finite ({len(ckpts)} checkpoints)", finite)
    res = agpo("--out", str(root / "nan_flag"), *flags, "--rollout.temperature", "nan")
    rep.check("NaN", "--rollout.temperature nan refused before a run folder exists",
              res.returncode == 2 and not (root / "nan_flag").exists())


# ---------------------------------------------------------------------------------------------
# agpo demo: workers die with their parent


DEMO = ["demo", "--jobs", "2", "--methods", "grpo", "--steps", "240", "--prompts-per-step", "4",
        "--n", "4", "--limit", "8", "--pretrain-steps", "20", "--no-progress"]
"""A demo whose RL run lasts well beyond the 3 s allowed for its workers to end once its first
checkpoint is written (step 40 of about 290: 250 steps of 0.03-0.1 s remain), so that orphaned
workers would still be training when we look; its 20-step base model is built in seconds."""


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid`` (read from /proc: Linux)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def demo_orphan(root: Path, rep: Report) -> None:
    """`agpo demo`'s parent killed with kill -9 while a worker trains: its workers must end with
    it (an orphan would train on for minutes holding its run's lock, so that the re-run is
    refused), and an immediate re-run resumes the RL run from its checkpoint."""
    out = root / "demo"
    env = {**os.environ, "AGPO_CACHE": str(root / "cache")}  # a 20-step base model of its own
    args = [*DEMO, "--out", str(out)]
    proc = command(*args, wait=False, env=env, start_new_session=True)
    ckpts = out / "run_grpo" / "checkpoints"
    deadline = time.monotonic() + 600
    while proc.poll() is None and not any(ckpts.glob("step_*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    metrics = out / "run_grpo" / "metrics.jsonl"
    kept = metrics.read_text().splitlines(keepends=True) if metrics.exists() else []
    step = max((int(p.name[5:]) for p in ckpts.glob("step_*")), default=0)
    rep.check("demo orphans", f"parent killed mid-training ({len(workers)} child processes, "
                              f"checkpoint step {step})",
              proc.returncode == -signal.SIGKILL and bool(workers) and step > 0)
    t = time.monotonic()
    while any(map(alive, workers)) and time.monotonic() - t < 10:
        time.sleep(0.05)
    left = [w for w in workers if alive(w)]
    rep.check("demo orphans", f"workers gone {time.monotonic() - t:.1f} s after the parent "
                              f"(limit 3 s; left: {left})", not left and time.monotonic() - t < 3)
    for w in left:  # this script's own orphans: not left running
        os.kill(w, signal.SIGKILL)
    res = command(*args, env=env)
    rep.check("demo orphans", f"immediate re-run exits {res.returncode}: "
                              f"{last_line(res.stderr, 'rror')[:70]!r}",
              res.returncode == 0 and "Traceback" not in res.stderr)
    again = metrics.read_text().splitlines(keepends=True) if metrics.exists() else []
    steps = [json.loads(x)["step"] for x in again]
    rep.check("demo orphans", f"the re-run resumed from step {step} (its lines 1-{step} kept, "
                              "each step once)",
              step > 0 and again[:step] == kept[:step] and steps == list(range(1, len(steps) + 1)))


# ---------------------------------------------------------------------------------------------
# agpo eval: a task edited between two runs of one command


EVAL = ["eval", "--model", "tiny", "--n", "8", "--max-new-tokens", "2", "--verifier", "exact",
        "--workers", "0", "--temperature", "1.0", "--top-p", "1.0", "--template", "plain",
        "--no-progress"]
NEVER = "no 2-token answer"  # a gold no completion of this eval can equal


def write_task(path: Path, golds: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"id": pid, "prompt": f"{i}+{i % 7}=", "gold": gold}) + "\n"
                            for i, (pid, gold) in enumerate(golds.items())))
    return path


def task_edit(root: Path, rep: Report) -> None:
    """The gold answers of a task file edited between two runs of the same `agpo eval ... --out
    DIR`: the second run must re-verify the changed problems (or refuse, naming them);
    passk.json must never count a sample correct under the old gold."""
    pids = [f"p{i}" for i in range(6)]
    probe = root / "edit_probe"
    res = command(*EVAL, "--task", str(write_task(root / "probe.jsonl", dict.fromkeys(pids, "7"))),
                  "--out", str(probe))
    if res.returncode != 0:
        rep.check("task edit", f"probe eval exits 0: {last_line(res.stderr)[:80]!r}", False)
        return
    # Each problem's gold becomes an answer one of its samples gave: the same seed draws the
    # same samples again, so under these golds some samples are correct.
    golds: dict[str, str] = {}
    for line in (probe / "samples.jsonl").read_text().splitlines():
        row = json.loads(line)
        answer = str(row.get("parsed") or "")
        if row["problem_id"] not in golds and answer.strip() == answer != "":
            golds[row["problem_id"]] = answer
    task = write_task(root / "edited.jsonl", {pid: golds.get(pid, NEVER) for pid in pids})
    out = root / "edit"
    res = command(*EVAL, "--task", str(task), "--out", str(out))
    before = json.loads((out / "passk.json").read_text()) if res.returncode == 0 else {}
    rep.check("task edit", f"eval under golds its samples gave: pass@1 {before.get('pass@1', 0):.3f}",
              res.returncode == 0 and before["pass@1"] > 0)
    write_task(task, dict.fromkeys(pids, NEVER))  # the edit: no sample is correct any more
    res = command(*EVAL, "--task", str(task), "--out", str(out))
    if res.returncode == 0:
        after = json.loads((out / "passk.json").read_text())
        rep.check("task edit", f"re-run exits 0 and re-verified: pass@1 {after['pass@1']:.3f} "
                               "(0 under the new golds; the old golds would count some)",
                  after["pass@1"] == 0.0 and after["num_samples"] == before["num_samples"])
    else:
        refusal = last_line(res.stderr, "error")
        rep.check("task edit", f"re-run refused: {refusal[:90]!r}",
                  all(p in refusal for p in golds) and "Traceback" not in res.stderr)


# ---------------------------------------------------------------------------------------------
# agpo report --out: never over a file agpo did not write as a report


def report_overwrite(root: Path, rep: Report, flags: list[str]) -> None:
    """`agpo report RUN --out` aimed at the run's own config.yaml, its weights, or a directory:
    refused in one line with nothing changed, and the run still resumes."""
    run = root / "report_run"
    res = agpo("--out", str(run), *flags, "--train.steps", "2", "--train.checkpoint-every", "1")
    if res.returncode != 0:
        rep.check("report --out", f"run for the scenario exits 0: {last_line(res.stderr)[:80]!r}",
                  False)
        return
    weights = next((run / "checkpoints").glob("step_*/model.safetensors"))
    for victim in (run / "config.yaml", weights):
        before = victim.read_bytes()
        res = command("report", str(run), "--out", str(victim))
        said = last_line(res.stderr, "error").split(f"{victim}: ")[-1]
        rep.check("report --out", f"over {victim.relative_to(root)}: exit {res.returncode}, "
                                  f"{said[:50]!r}",
                  res.returncode == 2 and victim.read_bytes() == before
                  and res.stderr.count("\n") == 1)
    res = command("report", str(run), "--out", str(run / "checkpoints"))
    stray = sorted(p.name for p in (run / "checkpoints").iterdir() if not p.name.startswith("step_"))
    said = last_line(res.stderr, "error").split("checkpoints: ")[-1]
    rep.check("report --out", f"a directory: exit {res.returncode}, {said[:40]!r}, "
                              f"stray files {stray}",
              res.returncode == 2 and not stray and "Traceback" not in res.stderr)
    res = agpo("--resume", str(run), "--train.steps", "3")
    rep.check("report --out", "the run resumes afterwards", res.returncode == 0)
    report = root / "report.html"
    codes = [command("report", str(run), "--out", str(report)).returncode for _ in range(2)]
    rep.check("report --out", f"its own report is replaced by a re-run (exits {codes})",
              codes == [0, 0] and report.stat().st_size > 0)

SCENARIOS = ("train", "demo-orphan", "task-edit", "report-overwrite")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS),
                    help="run only these scenarios (default: all)")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="agpo-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    task = root / "task.jsonl"
    task.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"{i}+{i % 7}=", "gold": "7"}) + "\n"
                            for i in range(32)))
    flags = [*FLAGS, "--task.spec", str(task)]
    rep = Report()
    t0 = time.perf_counter()
    if "train" in args.only:
        train_scenarios(root, rep, flags)
    if "demo-orphan" in args.only:
        demo_orphan(root, rep)
    if "task-edit" in args.only:
        task_edit(root, rep)
    if "report-overwrite" in args.only:
        report_overwrite(root, rep, flags)

    held = sum(h for _, _, h in rep.rows)
    print(f"\n{held}/{len(rep.rows)} checks held in {time.perf_counter() - t0:.0f} s; runs in {root}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if held == len(rep.rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
