"""Experiment trackers. TensorBoard: every metrics.jsonl key as a scalar series; a resumed run's
events read as the uninterrupted run's (steps redone after the checkpoint replace the discarded
ones). Weights & Biases: every metrics row logged at its step with the resolved config, one W&B
run across resumes, and a real offline run written into the run directory."""

from __future__ import annotations

import shutil
import sys
import types

import pytest

from agpo.errors import UserError
from agpo.train.cli import main


def _scalars(run_dir) -> dict[str, tuple[list[int], list[float]]]:  # noqa: ANN001
    """Each tag's (steps, values) as TensorBoard reads them back."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: ([e.step for e in acc.Scalars(tag)], [e.value for e in acc.Scalars(tag)])
            for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_match_metrics_jsonl_and_survive_a_resume(base_flags, read_metrics, tmp_path):
    flags = [*base_flags, "--train.steps", "3", "--train.checkpoint-every", "1",
             "--train.keep-checkpoints", "0", "--log.tensorboard"]
    full = tmp_path / "full"
    assert main(["--out", str(full), *flags]) == 0
    rows = read_metrics(full)
    events = _scalars(full)
    for key in ("reward/mean", "loss/pg", "rollout/response_len", "perf/tokens_total"):
        steps, values = events[key]
        assert steps == [r["step"] for r in rows], key
        assert values == pytest.approx([r[key] for r in rows], rel=1e-6), key

    # Killed after step 3's events were written but before its checkpoint: the resumed run redoes
    # step 3, and TensorBoard must show one step-3 point (the redone one), not two.
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "step_3")
    assert main(["--resume", str(cut)]) == 0
    resumed = _scalars(cut)
    for key in ("reward/mean", "loss/pg"):
        assert resumed[key][0] == [1, 2, 3], key
        assert resumed[key][1] == pytest.approx(events[key][1], rel=1e-6), key


class FakeWandb(types.ModuleType):
    """Records what agpo hands to wandb (init arguments, logged rows) and nothing else."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.inits: list[dict] = []
        self.logged: list[tuple[int, dict]] = []
        self.finished = 0

    def init(self, **kwargs):  # noqa: ANN003, ANN201
        self.inits.append(kwargs)
        fake = self

        class Run:
            def log(self, metrics: dict, step: int) -> None:
                fake.logged.append((step, dict(metrics)))

            def finish(self) -> None:
                fake.finished += 1

        return Run()


def test_wandb_gets_every_metrics_row_and_one_run_across_a_resume(base_flags, read_metrics, tmp_path,
                                                                  monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    out = tmp_path / "run"
    flags = [*base_flags, "--train.checkpoint-every", "1", "--train.keep-checkpoints", "0",
             "--log.wandb-project", "agpo-tests"]
    assert main(["--out", str(out), *flags, "--train.steps", "2"]) == 0
    assert fake.logged == [(r["step"], {k: v for k, v in r.items() if k != "step"}) for r in read_metrics(out)]
    first = fake.inits[0]
    assert first["project"] == "agpo-tests" and first["name"] == "run" and first["resume"] == "allow"
    assert first["config"]["train"]["steps"] == 2 and first["config"]["log"]["wandb_project"] == "agpo-tests"
    assert first["dir"] == str(out) and fake.finished == 1

    assert main(["--resume", str(out), "--train.steps", "3"]) == 0
    assert fake.inits[1]["id"] == first["id"]  # the same W&B run continues
    assert [step for step, _ in fake.logged] == [1, 2, 3] and fake.finished == 2


def test_wandb_offline_run_lands_in_the_run_directory(base_flags, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    assert main(["--out", str(out), *base_flags, "--train.steps", "1", "--log.wandb-project", "agpo-tests"]) == 0
    run_id = (out / "wandb_run_id").read_text().strip()
    assert list((out / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))


def test_a_blank_wandb_project_is_refused_before_any_work(base_flags, tmp_path):
    with pytest.raises(UserError, match="--log.wandb-project"):
        main(["--out", str(tmp_path / "run"), *base_flags, "--log.wandb-project", " "])
    assert not (tmp_path / "run").exists()
