"""Issue #24.13: a run says which limit ended it, a resume that cannot add a step is refused
naming the limit and the flag that lifts it, and the progress bar shows the phase of the step
that runs (without changing any number the run computes)."""

from __future__ import annotations

import json

import pytest

from agpo.cli import main as agpo
from agpo.train import metrics as train_metrics
from agpo.train.cli import main as train_main

# 8 prompts × 8 one-token answers: 64 generated tokens per step.
BUDGET = ["--train.steps", "8", "--train.token-budget", "150"]


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_the_last_line_names_the_token_budget_that_ended_the_run(base_flags, read_metrics, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(["--out", str(out), *base_flags, *BUDGET]) == 0
    assert len(read_metrics(out)) == 3  # 64, 128, 192 tokens: the budget, not --train.steps 8
    lines = capsys.readouterr().out.splitlines()
    assert "stopped at step 3: --train.token-budget 150 reached (192 tokens)" in lines


def test_the_last_line_names_the_step_limit(base_flags, tmp_path, capsys):
    assert train_main(["--out", str(tmp_path / "run"), *base_flags, "--train.steps", "2"]) == 0
    assert "stopped at step 2: --train.steps 2 reached" in capsys.readouterr().out.splitlines()


@pytest.fixture
def budget_run(base_flags, tmp_path):
    """A run the token budget stopped at step 3 (of --train.steps 8)."""
    out = tmp_path / "run"
    assert train_main(["--out", str(out), *base_flags, *BUDGET]) == 0
    return out


def _files(run):
    return {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != "env.json"}


def test_a_resume_that_the_budget_stops_is_refused_naming_the_budget(budget_run, capsys):
    before = _files(budget_run)
    capsys.readouterr()
    code = agpo(["train", "--resume", str(budget_run), "--train.steps", "6"])
    err = _one_line(capsys.readouterr().err)
    assert code != 0
    assert "stopped at step 3: --train.token-budget 150 reached (192 tokens)" in err
    assert "--train.token-budget above 192 (0: no budget)" in err
    assert _files(budget_run) == before  # config.yaml keeps --train.steps 8: nothing rewritten


def test_lifting_the_named_limit_lets_the_resume_run(budget_run, read_metrics, capsys):
    assert train_main(["--resume", str(budget_run), "--train.steps", "5", "--train.token-budget", "0"]) == 0
    assert [r["step"] for r in read_metrics(budget_run)] == [1, 2, 3, 4, 5]
    assert "stopped at step 5: --train.steps 5 reached" in capsys.readouterr().out.splitlines()
    code = agpo(["train", "--resume", str(budget_run)])
    err = _one_line(capsys.readouterr().err)
    assert code != 0 and "stopped at step 5: --train.steps 5 reached" in err
    assert "--train.steps above 5" in err and "token-budget" not in err


class _Recorder(train_metrics.StepProgress):
    """The progress bar's info texts, in the order shown."""

    shown: list[str] = []

    def __init__(self, show):
        super().__init__(lambda text: (self.shown.append(text), show(text)))


def _metrics_without_times(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("perf/time")} for r in rows]


def test_the_bar_shows_each_phase_of_a_step_as_it_runs(base_flags, tmp_path, monkeypatch):
    import agpo.train.loop as loop

    monkeypatch.setattr(_Recorder, "shown", [])
    monkeypatch.setattr(loop, "StepProgress", _Recorder)
    flags = [f for f in base_flags if f != "--log.no-progress"]
    shown_run, quiet_run = tmp_path / "shown", tmp_path / "quiet"
    assert train_main(["--out", str(shown_run), *flags, "--train.steps", "2"]) == 0
    texts = _Recorder.shown
    for step in (1, 2):
        phases = [t.split(f"step {step}: ")[1] for t in texts if f"step {step}: " in t]
        # The phases in the order they run; sampling reports its rows (64 = 8 prompts × 8) and
        # its decode position (one token at most here).
        names = ["sampling", "sampling 64/64 rows · token 1/1", "verifying", "scoring", "update"]
        names += ["saving the checkpoint"] if step == 2 else []  # the last step's
        order = [next(i for i, p in enumerate(phases) if p.startswith(name)) for name in names]
        assert order == sorted(order), phases
    assert texts[-1].startswith("reward ") and "step 2:" not in texts[-1]  # the finished step's metrics
    # Showing the phases changes no number: the same run with --log.no-progress logs the same.
    monkeypatch.setattr(_Recorder, "shown", [])
    assert train_main(["--out", str(quiet_run), *base_flags, "--train.steps", "2"]) == 0
    assert _Recorder.shown == []  # --log.no-progress: no progress at all
    assert _metrics_without_times(shown_run) == _metrics_without_times(quiet_run)


def test_the_bar_counts_the_updates_micro_batches(base_flags, tmp_path, monkeypatch):
    import agpo.train.loop as loop

    monkeypatch.setattr(_Recorder, "shown", [])
    monkeypatch.setattr(loop, "StepProgress", _Recorder)
    flags = [f for f in base_flags if f != "--log.no-progress"]
    # 64 rows in micro-batches of 16, two epochs of two mini-batches: 4 optimizer steps of 2.
    assert train_main(["--out", str(tmp_path / "run"), *flags, "--train.steps", "1", "--train.micro-batch-size", "16",
                       "--train.epochs", "2", "--train.mini-batch-prompts", "4"]) == 0
    updates = [t.split("step 1: ")[1] for t in _Recorder.shown if "step 1: update " in t]
    assert updates == [f"update {k}/4 · micro-batch {m}/2" for k in range(1, 5) for m in (1, 2)]
