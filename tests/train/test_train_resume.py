"""A resumed run equals the uninterrupted one: metrics (except perf/) and final weights."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from agpo.errors import UserError
from agpo.train.cli import main


def _comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("perf/time")} for r in rows]


def test_resume_from_a_middle_checkpoint_equals_the_uninterrupted_run(base_flags, read_metrics, tmp_path):
    full = tmp_path / "full"
    # PPO epochs, two mini-batches and a cosine schedule, so optimizer moments, the scheduler
    # position, the data cursor and both RNG streams all have to come back exactly.
    flags = [*base_flags, "--algo.advantage", "grpo", "--train.steps", "4", "--train.epochs", "2",
             "--train.mini-batch-prompts", "4", "--optim.schedule", "cosine",
             "--train.checkpoint-every", "2", "--train.keep-checkpoints", "0"]
    assert main(["--out", str(full), *flags]) == 0
    # An interrupted copy: killed after step 3 (step 4 never checkpointed, metrics row 3 written).
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "step_4")
    rows = (cut / "metrics.jsonl").read_text().splitlines()
    (cut / "metrics.jsonl").write_text("\n".join(rows[:3]) + "\n")
    assert main(["--resume", str(cut)]) == 0

    assert _comparable(read_metrics(cut)) == _comparable(read_metrics(full))
    a = load_file(str(full / "checkpoints" / "step_4" / "model.safetensors"))
    b = load_file(str(cut / "checkpoints" / "step_4" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state = json.loads((cut / "checkpoints" / "step_4" / "trainer_state.json").read_text())
    assert state["data"]["consumed"] == 4 * 8 and state["opt_steps"] == 4 * 2 * 2


def test_a_run_directory_is_never_silently_overwritten(base_flags, tmp_path):
    out = tmp_path / "run"
    assert main(["--out", str(out), *base_flags, "--train.steps", "1"]) == 0
    with pytest.raises(UserError, match="not empty"):
        main(["--out", str(out), *base_flags, "--train.steps", "1"])
    with pytest.raises(UserError, match="not a run directory"):
        main(["--resume", str(tmp_path / "nothing")])


def test_checkpoints_hold_only_safetensors_and_json(base_flags, tmp_path):
    out = tmp_path / "run"
    assert main(["--out", str(out), *base_flags, "--train.steps", "1"]) == 0
    files = {p.suffix for p in (out / "checkpoints" / "step_1").iterdir()}
    assert files <= {".safetensors", ".json"}, files
    assert not list((out / "checkpoints").glob(".*tmp"))


def test_lora_run_resumes_to_the_same_adapters(base_flags, read_metrics, tmp_path):
    pytest.importorskip("peft")
    full = tmp_path / "full"
    flags = [*base_flags, "--model.lora-rank", "4", "--algo.kl-coef", "0.04", "--train.steps", "2",
             "--train.checkpoint-every", "1", "--train.keep-checkpoints", "0"]
    assert main(["--out", str(full), *flags]) == 0
    assert read_metrics(full)[-1]["loss/ref_kl"] > 0  # reference = base with adapters disabled
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "step_2")
    assert main(["--resume", str(cut)]) == 0
    a = load_file(str(full / "checkpoints" / "step_2" / "adapter_model.safetensors"))
    b = load_file(str(cut / "checkpoints" / "step_2" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _stop_in(monkeypatch, target: object, name: str, call: int, *, after: bool) -> None:
    """Raise KeyboardInterrupt (what Ctrl-C and, through the CLI, SIGTERM raise) at the
    ``call``-th call of ``target.name``: after the real call ran (``after``), or instead of it."""
    real, calls = getattr(target, name), []

    def stopping(*args, **kwargs):  # noqa: ANN202
        calls.append(1)
        if len(calls) < call:
            return real(*args, **kwargs)
        if after:
            real(*args, **kwargs)  # the streams and the data cursor move on first
        raise KeyboardInterrupt

    monkeypatch.setattr(target, name, stopping)


def test_a_stop_while_sampling_checkpoints_the_step_and_resumes_exactly(
        base_flags, read_metrics, tmp_path, monkeypatch, capsys):
    from agpo.train.sampling import Sampler

    flags = [*base_flags, "--algo.advantage", "grpo", "--train.steps", "4", "--train.epochs", "2",
             "--train.mini-batch-prompts", "4", "--train.checkpoint-every", "0"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["--out", str(full), *flags]) == 0
    with monkeypatch.context() as m:
        _stop_in(m, Sampler, "collect", 3, after=True)  # step 3's sampling, done but not used
        with pytest.raises(KeyboardInterrupt):
            main(["--out", str(cut), *flags])
    assert "checkpoint 2 written" in capsys.readouterr().err
    assert [p.name for p in (cut / "checkpoints").iterdir()] == ["step_2"]
    assert main(["--resume", str(cut)]) == 0

    assert _comparable(read_metrics(cut)) == _comparable(read_metrics(full))
    a = load_file(str(full / "checkpoints" / "step_4" / "model.safetensors"))
    b = load_file(str(cut / "checkpoints" / "step_4" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stop_during_the_update_writes_no_checkpoint(base_flags, tmp_path, monkeypatch, capsys):
    import agpo.train.loop

    out = tmp_path / "run"
    _stop_in(monkeypatch, agpo.train.loop, "update", 3, after=False)  # in step 3: weights may be half-way
    with pytest.raises(KeyboardInterrupt):
        main(["--out", str(out), *base_flags, "--train.steps", "4", "--train.checkpoint-every", "0"])
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())
    assert "checkpoint" not in capsys.readouterr().err
