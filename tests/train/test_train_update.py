"""The update does not depend on micro-batching or on the number of processes (fixed batch)."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from agpo.policy import micro_batches, prompt_cache, token_logprobs
from agpo.rollout import SamplingConfig, sample
from agpo.train.config import OptimConfig
from agpo.train.update import TrainBatch, UpdateSpec, lr_scheduler, update

B, G = 4, 4


def _batch(model, tokenizer, seed: int = 0) -> TrainBatch:
    """A fixed rollout of B prompts × G with varied lengths, advantages and a dropped row."""
    g = torch.Generator().manual_seed(seed)
    prompts = [p for p in ["1+2=", "33+4=", "5=", "777+1="] for _ in range(G)]
    r = sample(model, tokenizer, prompts, torch.full((B * G,), 1.3), SamplingConfig(max_new_tokens=6), g)
    old, _ = token_logprobs(model, r, r.temperatures, micro_batch=16)
    ref = old + 0.05 * torch.randn(old.shape, generator=g)
    keep = torch.ones(B * G)
    keep[3] = 0  # a PSR/NSR-style dropped response leaves loss and denominator
    return TrainBatch(
        rollout=r, temperatures=r.temperatures, old_logprobs=old.detach(), ref_logprobs=ref,
        advantages=torch.randn(B * G, generator=g), loss_mask=r.response_mask * keep.long().unsqueeze(-1),
        clip_low=torch.full((B * G,), 0.2), clip_high=torch.full((B * G,), 0.28),
    )


def _spec(micro: int, aggregation: str = "token_mean", epochs: int = 2, tokens: int = 0) -> UpdateSpec:
    return UpdateSpec(objective="ppo_clip", aggregation=aggregation, kl_estimator="k3", kl_coef=0.1,
                      entropy_coef=0.01, max_len=6, epochs=epochs, mini_batches=1,
                      micro_batch_size=micro, group_size=G, grad_clip=0.0, micro_batch_tokens=tokens)


def _run(model, batch, spec) -> dict[str, torch.Tensor]:
    model = copy.deepcopy(model)
    # SGD compares gradients directly; Adam's g/|g| would amplify float noise in tiny entries.
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    update(model, opt, batch, spec)  # no scheduler: the LR stays 0.5
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _close(a: dict, b: dict, atol: float = 1e-6) -> bool:
    return all(torch.allclose(a[k], b[k], atol=atol, rtol=1e-5) for k in a)


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "constant"])
def test_micro_batch_1x16_equals_16x1(tiny_model, tiny_tokenizer, aggregation):
    batch = _batch(tiny_model, tiny_tokenizer)
    whole = _run(tiny_model, batch, _spec(16, aggregation))
    pieces = _run(tiny_model, batch, _spec(1, aggregation))
    assert _close(whole, pieces)
    assert not _close(whole, dict(tiny_model.state_dict()))  # the update did move the weights


@pytest.mark.parametrize("micro", [16, 3])
def test_prompts_run_once_per_mini_batch_give_the_update_of_whole_rows(tiny_model, tiny_tokenizer, monkeypatch, micro):
    # Micro-batches of 3 rows of similar length mix groups: each indexes the mini-batch's prompt
    # cache, and the prompts' gradient goes through their forward once, after the last of them.
    batch = _batch(tiny_model, tiny_tokenizer)
    built: list[int] = []
    build = prompt_cache.PromptCache.build
    monkeypatch.setattr(prompt_cache.PromptCache, "build",
                        classmethod(lambda cls, *a, **k: (built.append(1), build(*a, **k))[1]))
    shared = _run(tiny_model, batch, _spec(micro, epochs=1))
    assert len(built) == 1  # one cache for the mini-batch, none per micro-batch
    whole = _run(tiny_model, batch, dataclasses.replace(_spec(micro, epochs=1), share_prompts=False))
    assert len(built) == 1  # every row whole: no cache
    assert _close(shared, whole)
    assert not _close(shared, dict(tiny_model.state_dict()))


def test_token_capped_micro_batches_give_the_same_update(tiny_model, tiny_tokenizer):
    batch = _batch(tiny_model, tiny_tokenizer)
    rows = torch.arange(B * G)
    parts = micro_batches(rows, batch.rollout, max_rows=16, max_tokens=24)
    assert len(parts) > 2 and torch.equal(torch.cat(parts), rows)
    whole = _run(tiny_model, batch, _spec(16))
    capped = _run(tiny_model, batch, _spec(16, tokens=24))
    assert _close(whole, capped)


def test_old_logprobs_from_the_first_forward_equal_a_scoring_pass(tiny_model, tiny_tokenizer):
    # On-policy (one epoch, one mini-batch) π_old may come from the update's own first forward:
    # the same update as with π_old scored beforehand, and the update returns those π_old (and
    # their entropy) without writing them into the batch it was given.
    from dataclasses import replace

    batch = _batch(tiny_model, tiny_tokenizer)
    _, entropy = token_logprobs(tiny_model, batch.rollout, batch.temperatures, micro_batch=16)
    spec = _spec(5, epochs=1)
    models = [copy.deepcopy(tiny_model) for _ in range(2)]
    scored = update(models[0], torch.optim.SGD(models[0].parameters(), lr=0.5), batch, spec)
    assert scored.old_logprobs is batch.old_logprobs and scored.entropy is None  # nothing measured
    lazy = replace(batch, old_logprobs=None)
    measured = update(models[1], torch.optim.SGD(models[1].parameters(), lr=0.5), lazy, spec)
    assert lazy.old_logprobs is None  # the input is left alone
    assert torch.allclose(measured.old_logprobs, batch.old_logprobs, atol=1e-5)
    assert torch.allclose(measured.entropy, entropy, atol=1e-5)
    assert _close(*(dict(m.state_dict()) for m in models))  # the same update
    with pytest.raises(ValueError, match="one optimizer step"):
        _run(tiny_model, replace(batch, old_logprobs=None), _spec(5, epochs=2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        saved = torch.load(path, weights_only=False)  # a file this test wrote a moment ago
        model, batch = saved["model"], saved["batch"]
        rows = torch.arange(rank * B * G // world, (rank + 1) * B * G // world)  # this process's groups
        local = TrainBatch(batch.rollout.select(rows), *(getattr(batch, f)[rows] for f in (
            "temperatures", "old_logprobs", "ref_logprobs", "advantages", "loss_mask", "clip_low", "clip_high")))
        state = _run(model, local, _spec(3))
        if rank == 0:
            torch.save(state, path + ".out")
        dist.barrier()  # neither side may close its gloo connection while the other still uses it
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one(tiny_model, tiny_tokenizer, tmp_path):
    batch = _batch(tiny_model, tiny_tokenizer, seed=1)
    single = _run(tiny_model, batch, _spec(16))
    path = str(tmp_path / "shared.pt")
    torch.save({"model": tiny_model, "batch": batch}, path)
    mp.start_processes(_worker, args=(2, _free_port(), path), nprocs=2, join=True, start_method="spawn")
    assert _close(single, torch.load(path + ".out"))


def _lrs(cfg: OptimConfig, total: int, at: list[int], done: int = 0) -> list[float]:
    """The LR at optimizer steps ``at`` (0-based) of a schedule over ``total`` steps."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=123.0)  # --optim.lr wins
    sched = lr_scheduler(opt, cfg, total, done=done)
    out = []
    for k in range(done, max(at) + 1):
        if k in at:
            out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_lr_schedule_warmup_then_decay():
    cfg = OptimConfig(lr=1.0, warmup_steps=2, schedule="linear")
    # transformers' warm-up k/2 (the first step has LR 0): 0, 0.5; then linear from 1 to 0 over
    # the remaining 10 − 2 = 8 steps: (10 − k)/8.
    assert _lrs(cfg, 10, [0, 1, 2, 6, 10]) == [0.0, 0.5, 1.0, 0.5, 0.0]
    cos = OptimConfig(lr=1.0, schedule="cosine")
    assert _lrs(cos, 10, [0, 5]) == [1.0, pytest.approx(0.5)]  # half-way: (1 + cos(π/2)) / 2
    assert _lrs(OptimConfig(lr=0.3), 10, [0, 9]) == [0.3, 0.3]  # constant
    assert _lrs(OptimConfig(lr=1.0, warmup_steps=4), 10, [0, 2, 4, 9]) == [0.0, 0.5, 1.0, 1.0]


def test_lr_schedule_resumed_after_k_steps_equals_the_uninterrupted_one():
    cfg = OptimConfig(lr=1e-3, warmup_steps=3, schedule="cosine")
    assert _lrs(cfg, 20, list(range(7, 20)), done=7) == _lrs(cfg, 20, list(range(7, 20)))


def _train_worker(rank: int, world: int, port: int, argv: list[str]) -> None:
    # What torchrun sets for each process.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    from agpo.train.cli import main

    assert main(argv) == 0


def test_the_train_command_runs_data_parallel_on_two_processes(base_flags, read_metrics, tmp_path):
    out = tmp_path / "run"
    argv = ["--out", str(out), *base_flags, "--train.steps", "2", "--train.micro-batch-size", "4"]
    mp.start_processes(_train_worker, args=(2, _free_port(), argv), nprocs=2, join=True,
                       start_method="spawn")
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]  # one metrics row per step, written by rank 0
    assert all(r["rollout/groups"] == 8 and r["perf/tokens_step"] == 64 for r in rows)  # 4 + 4 prompts
    assert (out / "checkpoints" / "step_2" / "rng_rank1.safetensors").is_file()


def test_every_process_rng_is_inside_the_checkpoint_and_a_missing_one_is_an_error(base_flags, tmp_path):
    out = tmp_path / "run"
    argv = ["--out", str(out), *base_flags, "--train.steps", "1", "--train.micro-batch-size", "4"]
    mp.start_processes(_train_worker, args=(2, _free_port(), argv), nprocs=2, join=True,
                       start_method="spawn")
    ckpt = out / "checkpoints" / "step_1"
    sums = json.loads((ckpt / "checksums.json").read_text())
    # Listed in the checksums, which are written just before the rename: rank 1's file was in
    # the temporary folder, not added to the final one afterwards.
    assert "rng_rank1.safetensors" in sums
    (ckpt / "rng_rank1.safetensors").unlink()
    del sums["rng_rank1.safetensors"]
    (ckpt / "checksums.json").write_text(json.dumps(sums))
    resume = ["--resume", str(out), "--train.steps", "2"]
    with pytest.raises(mp.ProcessRaisedException, match=r"rng_rank1\.safetensors: missing"):
        mp.start_processes(_train_worker, args=(2, _free_port(), resume), nprocs=2, join=True,
                           start_method="spawn")


def test_the_train_command_without_shared_prompts_trains_the_same(base_flags, read_metrics, tmp_path):
    from agpo.train.cli import main

    runs = {}
    for name, extra in (("shared", []), ("whole", ["--train.no-share-prompts"])):
        out = tmp_path / name
        main(["--out", str(out), *base_flags, "--train.steps", "2", "--train.micro-batch-size", "4", *extra])
        runs[name] = read_metrics(out)
    shared, whole = runs["shared"], runs["whole"]
    assert [r["reward/mean"] for r in shared] == [r["reward/mean"] for r in whole]  # the same samples
    # The first step's gradient (before Adam, whose g/|g| amplifies rounding in tiny entries).
    for key in ("loss/grad_norm", "loss/pg", "rollout/entropy"):
        assert shared[0][key] == pytest.approx(whole[0][key], rel=1e-4, abs=1e-7), key
