"""FSDP2 sharding (agpo.train.fsdp): 2 processes under torchrun equal 1 plain process; the full
state saved from 2 processes resumes in 2 processes and in 1 to the uninterrupted next step;
the refusals."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agpo.errors import UserError
from agpo.models.precision import Precision
from agpo.train import fsdp

WORKER = Path(__file__).with_name("fsdp_worker.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")
# Sums over 2 processes add in another order than over 1: float32 rounding, ~1e-7 relative on a
# gradient. AdamW divides each gradient by its running RMS, so an element whose gradient is
# nearly 0 can turn that into a larger change of the update; measured after 2 steps at lr 1e-2:
# 9e-7 at most. 1e-5 is 1/1000 of one step's size, far below any real difference (a wrong
# shard, a doubled or halved gradient, a skipped step: ≥ 1e-3).
WEIGHT_ATOL = 1e-5


def _worker_module():  # noqa: ANN202 — the worker script as a module (its data and model recipe)
    spec = importlib.util.spec_from_file_location("fsdp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One torchrun launch of the worker over 2 processes (gloo, CPU); its output folder."""
    out = tmp_path_factory.mktemp("fsdp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        proc = subprocess.run(
            [str(TORCHRUN), "--nproc-per-node", "2", "--standalone", str(WORKER), str(out)],
            capture_output=True, text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"torchrun ran past 300 s: {(err.stderr or '')[-3000:]}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return out


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_two_processes_equal_one(two_process_run: Path) -> None:
    info = json.loads((two_process_run / "info.json").read_text())
    assert info["world"] == 2 and info["local_rows"] == 2  # each process saw half of each batch
    assert info["shard_numel"] * 2 == info["full_numel"]  # and held half of every parameter
    plain = load_file(two_process_run / "grads_plain.safetensors")
    # Averaged over processes (each loss the mean of its half), or summed (each loss its share of
    # the whole batch's mean): the gradient of the whole batch either way.
    for kind in ("sharded", "summed"):
        grads = load_file(two_process_run / f"grads_{kind}.safetensors")
        assert _max_diff(grads, plain) < 1e-6 * max(float(g.abs().max()) for g in plain.values())
    weights = load_file(two_process_run / "sharded.safetensors")
    plain = load_file(two_process_run / "plain.safetensors")
    assert weights.pop("lm_head.weight").equal(weights["model.embed_tokens.weight"])  # still tied
    assert _max_diff(weights, plain) < WEIGHT_ATOL


def test_bf16_mixed_shards_keep_float32_master_weights(two_process_run: Path) -> None:
    info = json.loads((two_process_run / "info.json").read_text())
    assert info["mixed_param_dtypes"] == ["torch.float32"]  # what AdamW steps
    assert info["mixed_compute_dtype"] == "torch.bfloat16"  # what the matmuls ran in
    assert info["mixed_moved"] == info["shard_numel"]  # one step moved every local weight


def test_resume_in_two_processes_is_the_uninterrupted_step(two_process_run: Path) -> None:
    uninterrupted = load_file(two_process_run / "uninterrupted.safetensors")
    resumed = load_file(two_process_run / "resumed.safetensors")
    # Same processes, same shards, same state: bit for bit.
    assert all(resumed[k].equal(uninterrupted[k]) for k in uninterrupted)
    assert _max_diff(uninterrupted, load_file(two_process_run / "sharded.safetensors")) > 1e-3  # it stepped


def test_resume_in_one_plain_process_is_the_uninterrupted_step(two_process_run: Path) -> None:
    w = _worker_module()
    ckpt = two_process_run / "ckpt"
    model = w.model(seed=7)
    opt = w.adamw(model)
    fsdp.load_full(model, opt, ckpt)
    saved = load_file(two_process_run / "sharded.safetensors")
    assert _max_diff({k: v for k, v in model.state_dict().items()}, saved) == 0.0
    assert opt.state_dict()["state"][0]["step"] == w.STEPS_BEFORE
    w.step(model, opt, w.batches(w.STEPS_BEFORE + 1)[w.STEPS_BEFORE])
    after = {k: v for k, v in model.state_dict().items()}
    uninterrupted = load_file(two_process_run / "uninterrupted.safetensors")
    assert _max_diff(after, uninterrupted) < WEIGHT_ATOL


def test_the_saved_folder_loads_with_agpo_models(two_process_run: Path, tmp_path: Path) -> None:
    import shutil

    from agpo.models import load
    from agpo.models.tiny import char_tokenizer

    folder = shutil.copytree(two_process_run / "ckpt", tmp_path / "ckpt")
    char_tokenizer().save_pretrained(folder)
    model, _ = load(str(folder))  # strict: no weight missing, extra or reshaped
    saved = load_file(two_process_run / "sharded.safetensors")
    assert _max_diff(dict(model.state_dict()), saved) == 0.0


def test_fsdp_without_torchrun_is_refused(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(UserError, match=r"^--train.fsdp: FSDP shards the model over processes "
                                        r"started by torchrun, and WORLD_SIZE and RANK are not set"):
        fsdp.shard(tiny_model, Precision("fp32"))


def test_fsdp_with_lora_is_refused(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    peft = pytest.importorskip("peft")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    lora = peft.get_peft_model(tiny_model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(UserError, match=r"^--train.fsdp with LoRA: not supported"):
        fsdp.shard(lora, Precision("fp32"))


def test_a_model_without_decoder_layers_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UserError, match=r"^--train.fsdp: cannot find the decoder layers of Sequential"):
        fsdp.shard(torch.nn.Sequential(torch.nn.Linear(2, 2)), Precision("fp32"))


def test_decoder_layers_of_a_transformers_model(tiny_model) -> None:
    layers = fsdp.decoder_layers(tiny_model)
    assert layers == list(tiny_model.model.layers)  # LlamaDecoderLayer, from _no_split_modules
