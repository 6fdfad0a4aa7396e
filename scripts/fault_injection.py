"""Fault injection through the `agpo train` command: kill -9, a truncated checkpoint, two
concurrent resumes, a diverging (NaN) run. Each scenario runs on the random `tiny` model with a
one-character task in seconds and prints what held.

    python scripts/fault_injection.py [--keep DIR]

Exit status 0 when every check held. Runs in a temporary folder (kept with --keep).
"""

from __future__ import annotations

import argparse
import json
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
    cmd = [sys.executable, "-m", "agpo.cli", "train", *args]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", type=Path, default=None)
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="agpo-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    task = root / "task.jsonl"
    task.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"{i}+{i % 7}=", "gold": "7"}) + "\n"
                            for i in range(32)))
    flags = [*FLAGS, "--task.spec", str(task)]
    rep = Report()
    steps = 12
    t0 = time.perf_counter()

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

    held = sum(h for _, _, h in rep.rows)
    print(f"\n{held}/{len(rep.rows)} checks held in {time.perf_counter() - t0:.0f} s; runs in {root}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if held == len(rep.rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
