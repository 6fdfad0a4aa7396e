"""`agpo train --train.fsdp` through the command line under torchrun (2 processes, gloo, CPU) on
the tiny "answer 7" task: it equals the same run unsharded (plain data parallelism over the same
2 processes, which samples the same tokens), a run stopped after step 2 and resumed equals the
uninterrupted one, its checkpoint resumes in 1 process, and `agpo eval` loads the checkpoint.

The unsharded reference is 2 DDP processes, not 1 process: each process samples its prompts with
its own generator, so only a run of as many processes draws the same responses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

TORCHRUN = Path(sys.executable).with_name("torchrun")
STEPS = 3
# Step 1 is the same gradient summed in another order (reduce-scatter vs. one all-reduce) and
# through another forward (full logits vs. split head, no prompt cache in the sharded update):
# float32 rounding, measured 6e-8 on its norm. AdamW divides each gradient by its running RMS,
# so an element whose gradient is nearly 0 turns that rounding into a visible change of the
# step: after 3 steps at lr 1e-2 the weights differ by 5e-4 at most, the metrics by 2.5e-5. The
# tolerances are 1/5 of one step's size (~1e-2) and 1e-4; a wrong shard, a halved or doubled
# gradient or a missing step moves them by ≥ 1e-2.
WEIGHT_ATOL, METRIC_ATOL, FIRST_GRAD_RTOL = 2e-3, 1e-4, 1e-6


def _torchrun(nproc: int, args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([str(TORCHRUN), "--nproc-per-node", str(nproc), "--standalone", "-m", "agpo.cli",
                           "train", *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, base_flags: list[str]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fsdp_cli")
    flags = [*base_flags, "--train.steps", str(STEPS), "--train.checkpoint-every", "2",
             "--train.keep-checkpoints", "0"]
    out = {"fsdp": root / "fsdp", "ddp": root / "ddp"}
    _torchrun(2, ["--train.fsdp", *flags, "--out", str(out["fsdp"])])
    _torchrun(2, [*flags, "--out", str(out["ddp"])])
    # A run stopped after its step-2 checkpoint: the uninterrupted run's directory without step 3.
    for name, nproc in (("resumed", 2), ("resumed_1", 1)):
        out[name] = root / name
        shutil.copytree(out["fsdp"], out[name])
        shutil.rmtree(out[name] / "checkpoints" / f"step_{STEPS}")
        _torchrun(nproc, ["--resume", str(out[name])])
    return out


def _weights(run: Path) -> dict:
    return load_file(run / "checkpoints" / f"step_{STEPS}" / "model.safetensors")


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_sharded_processes_equal_two_unsharded(runs, read_metrics) -> None:
    sharded, plain = read_metrics(runs["fsdp"]), read_metrics(runs["ddp"])
    assert len(sharded) == len(plain) == STEPS
    first = sharded[0]["loss/grad_norm"]
    assert abs(first - plain[0]["loss/grad_norm"]) <= FIRST_GRAD_RTOL * first
    for a, b in zip(sharded, plain, strict=True):
        assert a["reward/mean"] == b["reward/mean"]  # the same responses were sampled
        for key in a:
            if not key.startswith("perf/time"):
                assert abs(a[key] - b[key]) < METRIC_ATOL, key
    assert _max_diff(_weights(runs["fsdp"]), _weights(runs["ddp"])) < WEIGHT_ATOL
    env = json.loads((runs["fsdp"] / "env.json").read_text())
    assert env["fsdp"] is True and env["world_size"] == 2 and env["precision"] == "fp32"


def test_resume_after_step_2_equals_the_uninterrupted_run(runs, read_metrics) -> None:
    # Same processes, same shards, same state: bit for bit.
    assert _max_diff(_weights(runs["resumed"]), _weights(runs["fsdp"])) == 0.0
    assert read_metrics(runs["resumed"])[-1]["loss/grad_norm"] == read_metrics(runs["fsdp"])[-1]["loss/grad_norm"]


def test_a_two_process_checkpoint_resumes_in_one_process(runs, read_metrics) -> None:
    metrics = read_metrics(runs["resumed_1"])
    assert [m["step"] for m in metrics] == [1, 2, 3]
    # Steps 1-2 are the 2-process run's; step 3 ran in one process from its weights: the
    # same prompts, sampled by one stream instead of two, so the step differs but moved them.
    assert metrics[:2] == read_metrics(runs["fsdp"])[:2]
    step2 = load_file(runs["fsdp"] / "checkpoints" / "step_2" / "model.safetensors")
    assert 0 < _max_diff(_weights(runs["resumed_1"]), step2)
    state = json.loads((runs["resumed_1"] / "checkpoints" / f"step_{STEPS}" / "trainer_state.json").read_text())
    assert state["world"] == 1 and state["fsdp"] is True


def test_agpo_eval_loads_the_sharded_runs_checkpoint(runs, seven_task, tmp_path) -> None:
    from agpo.cli import main

    ckpt = runs["fsdp"] / "checkpoints" / f"step_{STEPS}"
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(ckpt), "--task", str(seven_task), "--n", "2", "--limit", "4",
                 "--max-new-tokens", "1", "--verifier", "exact", "--workers", "0", "--no-progress", "--out", str(out)]) == 0
    assert any(out.iterdir())


def test_fsdp_without_torchrun_is_refused_before_anything_is_written(base_flags, tmp_path, monkeypatch,
                                                                    capsys) -> None:
    from agpo.cli import main

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    out = tmp_path / "run"
    assert main(["train", "--train.fsdp", *base_flags, "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --train.fsdp: FSDP shards the model over processes")
    assert not out.exists()


def test_fsdp_with_lora_is_refused(base_flags, tmp_path, capsys) -> None:
    from agpo.cli import main

    pytest.importorskip("peft")
    assert main(["train", "--train.fsdp", "--model.lora-rank", "2", *base_flags, "--out", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.fsdp" in err[0] and "LoRA" in err[0]
    assert not (tmp_path / "r").exists()
