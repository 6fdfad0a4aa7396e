"""TensorBoard events: every metrics.jsonl key as a scalar series; a resumed run's events read
as the uninterrupted run's (steps redone after the checkpoint replace the discarded ones)."""

from __future__ import annotations

import shutil

import pytest

from agpo.train.cli import main

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _scalars(run_dir) -> dict[str, tuple[list[int], list[float]]]:  # noqa: ANN001
    """Each tag's (steps, values) as TensorBoard reads them back."""
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
