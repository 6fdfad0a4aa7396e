"""The trainer in bf16-mixed (float32 master weights, bfloat16 autocast) and the engine/trainer
mismatch correction, through the update and the command line."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from agpo.algos.mismatch import MismatchConfig, correct
from agpo.policy import token_logprobs
from agpo.rollout import SamplingConfig, sample
from agpo.train.update import TrainBatch, UpdateSpec, update

B, G = 2, 4


def _batch(model, tokenizer) -> TrainBatch:
    g = torch.Generator().manual_seed(0)
    prompts = [p for p in ["1+2=", "33+4="] for _ in range(G)]
    r = sample(model, tokenizer, prompts, torch.ones(B * G), SamplingConfig(max_new_tokens=4), g)
    old, _ = token_logprobs(model, r, r.temperatures, micro_batch=8)
    return TrainBatch(rollout=r, temperatures=r.temperatures, old_logprobs=old, ref_logprobs=None,
                      advantages=torch.randn(B * G, generator=g), loss_mask=r.response_mask.clone(),
                      clip_low=torch.full((B * G,), 0.2), clip_high=torch.full((B * G,), 0.2))


def _spec(**kw) -> UpdateSpec:
    return UpdateSpec(objective="ppo_clip", aggregation="token_mean", kl_estimator="k3", kl_coef=0.0,
                      entropy_coef=0.0, max_len=4, epochs=1, mini_batches=1, micro_batch_size=8,
                      group_size=G, grad_clip=0.0, **kw)


def _step(model, batch, spec, opt="adamw", lr=1e-6):  # noqa: ANN001, ANN202
    """(weights after one optimizer step, the step's loss/pg) on a copy of ``model``."""
    model = copy.deepcopy(model)
    optim = (torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0) if opt == "adamw"
             else torch.optim.SGD(model.parameters(), lr=lr))
    result = update(model, optim, batch, spec)
    return {k: v.detach().clone() for k, v in model.named_parameters()}, result.stats.reduce()["loss/pg"]


def test_a_bf16_mixed_step_at_lr_1e_6_moves_essentially_every_weight(tiny_model, tiny_tokenizer) -> None:
    batch = _batch(tiny_model, tiny_tokenizer)
    before = {k: v.detach() for k, v in tiny_model.named_parameters()}
    after, _ = _step(tiny_model, batch, _spec(autocast_bf16=True))
    # The gradient's support: weights with a zero gradient (embeddings of unused tokens) stay.
    grads, _ = _step(tiny_model, batch, _spec(), opt="sgd", lr=1.0)
    moved = touched = 0
    for name, w in after.items():
        assert w.dtype == torch.float32  # master weights stay float32
        has_grad = grads[name] != before[name]
        touched += int(has_grad.sum())
        moved += int(((w != before[name]) & has_grad).sum())
    assert touched > 0.5 * sum(w.numel() for w in after.values())
    assert moved >= 0.99 * touched  # bf16-pure would leave most of them (half ulp ≫ 1e-6)


def test_bf16_mixed_loss_and_gradient_agree_with_fp32(tiny_model, tiny_tokenizer) -> None:
    batch = _batch(tiny_model, tiny_tokenizer)
    before = {k: v.detach() for k, v in tiny_model.named_parameters()}
    # SGD at lr 1: the weight change is minus the gradient.
    fp32, loss32 = _step(tiny_model, batch, _spec(), opt="sgd", lr=1.0)
    bf16, loss16 = _step(tiny_model, batch, _spec(autocast_bf16=True), opt="sgd", lr=1.0)
    g32 = torch.cat([(before[k] - fp32[k]).flatten() for k in before])
    g16 = torch.cat([(before[k] - bf16[k]).flatten() for k in before])
    # bfloat16 keeps 8 significand bits (relative rounding 2^-9 ≈ 2e-3 per matmul input); on
    # this batch the gradient's relative error measured 4.3e-3 and the loss's 1.3e-3. 2e-2
    # bounds both with room for another seed; a gradient of the wrong scale or sign, or a
    # forward that no longer computes the same function, is off by ≥ 1e-1.
    assert float((g16 - g32).norm() / g32.norm()) < 2e-2
    assert abs(loss16 - loss32) <= 2e-2 * abs(loss32)
    assert not torch.equal(g16, g32)  # autocast did run the matmuls in bfloat16


def test_correction_off_is_todays_update_bit_for_bit(tiny_model, tiny_tokenizer) -> None:
    batch = _batch(tiny_model, tiny_tokenizer)
    plain, loss = _step(tiny_model, batch, _spec(), lr=1e-2)
    # Engine = trainer: every weight is exp(0) = 1 and no row is dropped.
    ones = correct(batch.old_logprobs, batch.old_logprobs, batch.rollout.response_mask, MismatchConfig())
    assert bool(ones.keep.all())
    weighted, loss_w = _step(tiny_model, dataclasses.replace(batch, is_weights=ones.weights), _spec(), lr=1e-2)
    assert loss_w == loss and all(torch.equal(plain[k], weighted[k]) for k in plain)


def test_engine_logprobs_that_differ_give_the_expected_weights_and_dropped_rows(tiny_model, tiny_tokenizer) -> None:
    batch = _batch(tiny_model, tiny_tokenizer)
    mask = batch.rollout.response_mask.float()
    a, b = [i for i in range(1, B * G) if mask[i].sum() >= 2][:2]  # rows of ≥ 2 tokens
    # Δ = trainer − engine: row 0 off by 3 nats on every token (geometric ratio e³ > 2: dropped),
    # row a one token off by 1 nat (e ≈ 2.72, truncated to 2; its geometric ratio e^(1/len) ≤
    # e^0.5 is kept), row b one token off by −1 (weight e^-1, kept); every other token Δ = 0.
    delta = torch.zeros_like(mask)
    delta[0] = 3.0 * mask[0]
    delta[a, 0] = 1.0
    delta[b, 1] = -1.0
    engine = (batch.old_logprobs - delta) * mask
    batch = dataclasses.replace(batch, rollout=dataclasses.replace(batch.rollout, logprobs=engine))
    c = correct(batch.old_logprobs, engine, batch.rollout.response_mask,
                MismatchConfig(token_cap=2.0, seq_mask="geometric", seq_cap=2.0))
    expected = mask.clone()
    expected[0] = 0.0
    expected[a, 0] = 2.0
    expected[b, 1] = math.exp(-1.0)
    assert torch.allclose(c.weights, expected, atol=1e-6)
    assert c.keep.tolist() == [False] + [True] * (B * G - 1)
    assert float(c.stats["mismatch/seq_masked_frac"]) == pytest.approx(1 / (B * G))
    # The loop's batch: dropped rows out of the loss mask (and its denominator), weights on tokens.
    kept = batch.loss_mask * c.keep.unsqueeze(-1).long()
    corrected = dataclasses.replace(batch, loss_mask=kept, is_weights=c.weights)
    _, loss = _step(tiny_model, corrected, _spec(), opt="sgd", lr=0.0)
    # The first forward is π_old (ratio 1 up to float rounding): ppo_clip's token loss is −A.
    manual = float((-batch.advantages.unsqueeze(-1) * expected * kept).sum() / kept.sum())
    assert loss == pytest.approx(manual, abs=1e-5)
    _, uncorrected = _step(tiny_model, batch, _spec(), opt="sgd", lr=0.0)
    assert abs(uncorrected - manual) > 1e-3  # the correction changed the loss


def test_a_bf16_cli_run_moves_the_weights_and_records_its_precision(base_flags, seven_model_dir, read_metrics,
                                                                    tmp_path, capsys) -> None:
    from agpo.cli import main

    out = tmp_path / "run"
    assert main(["train", *base_flags, "--model.dtype", "bf16", "--train.steps", "2",
                 "--train.prompts-per-step", "2", "--optim.lr", "1e-3", "--out", str(out)]) == 0
    env = json.loads((out / "env.json").read_text())
    assert env["precision"] == "bf16-mixed"  # bf16 trains as bf16-mixed
    assert [m["perf/precision_bf16"] for m in read_metrics(out)] == [1.0, 1.0]
    start = load_file(seven_model_dir / "model.safetensors")
    end = load_file(out / "checkpoints" / "step_2" / "model.safetensors")
    assert all(end[k].dtype == torch.float32 for k in end)
    assert any(not torch.equal(start[k], end[k]) for k in start)


def test_auto_precision_is_decided_once_and_printed(base_flags, tmp_path, capsys, monkeypatch) -> None:
    from agpo.cli import main
    from agpo.models import precision

    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda cpuinfo=None: [])
    out = tmp_path / "run"
    assert main(["train", *base_flags, "--model.dtype", "auto", "--train.steps", "1",
                 "--train.prompts-per-step", "2", "--out", str(out)]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if "--model.dtype auto" in x]
    assert len(lines) == 1 and lines[0].startswith("--model.dtype auto: fp32 (the CPU has no bfloat16")
    assert json.loads((out / "env.json").read_text())["precision"] == "fp32"


@pytest.mark.parametrize("flags", [["--algo.mismatch-correction"], ["--train.old-logprobs", "engine"]])
def test_runs_that_use_the_engines_logprobs_log_the_mismatch(flags, base_flags, read_metrics, tmp_path) -> None:
    from agpo.cli import main

    out = tmp_path / "run"
    assert main(["train", *base_flags, *flags, "--train.steps", "1", "--train.prompts-per-step", "2",
                 "--out", str(out)]) == 0
    (m,) = read_metrics(out)
    # The transformers engine's log-probs are the trainer's computation: the gap is float
    # rounding (its prompt cache and batch shapes differ from the scoring forward's).
    assert 0.0 <= m["mismatch/token_gap_mean"] <= m["mismatch/token_gap_max"] < 1e-4
    assert m["mismatch/seq_masked_frac"] == 0.0 and m["mismatch/seq_ratio_min"] <= 1.0 <= m["mismatch/seq_ratio_max"] + 1e-6
    assert "rollout/engine_logprob_gap" not in m  # one key per quantity


def test_the_correction_with_engine_logprobs_is_refused(base_flags, tmp_path, capsys) -> None:
    from agpo.cli import main

    assert main(["train", *base_flags, "--algo.mismatch-correction", "--train.old-logprobs", "engine",
                 "--out", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mismatch" in err[0] and "twice" in err[0]
    assert not (tmp_path / "r").exists()
