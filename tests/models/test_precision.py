"""agpo.models.precision: fp32 / bf16-mixed / bf16-pure, auto resolved once with its reason, the
lr check of pure bf16, and bf16-mixed agreeing with fp32 where it should."""

from __future__ import annotations

import copy

import pytest
import torch

import agpo.models.precision as precision
from agpo.errors import UserError
from agpo.models import load, torch_dtype
from agpo.models.precision import (
    Precision, autocast, check_lr_moves_weights, cpu_bf16_flags, measure_lr, resolve_precision,
)
from agpo.ops import logprobs_from_logits

CPUINFO = """processor\t: 0
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 amx_tile
processor\t: 1
flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 amx_tile
"""


@pytest.fixture
def no_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A CPU without bfloat16 instructions; returns the list that collects warnings."""
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: [])
    monkeypatch.setattr(precision, "_warned", set())
    return []


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    assert cpu_bf16_flags(CPUINFO) == ["avx512_bf16"]
    assert cpu_bf16_flags("flags\t: sse2 avx2\n") == []
    assert cpu_bf16_flags("flags\t: amx_bf16 avx512_bf16\n") == ["amx_bf16", "avx512_bf16"]


def test_auto_resolves_to_bf16_mixed_only_with_bf16_instructions(
    monkeypatch: pytest.MonkeyPatch, no_bf16_cpu: list[str],
) -> None:
    p = resolve_precision("auto", "cpu")
    assert p == Precision("fp32", p.reason) and "no bfloat16 instructions" in p.reason
    assert torch_dtype("auto", "cpu") == torch.float32
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ["amx_bf16"])
    p = resolve_precision("auto", "cpu")
    assert p.name == "bf16-mixed" and "amx_bf16" in p.reason
    assert (p.param_dtype, p.compute_dtype) == (torch.float32, torch.bfloat16)
    assert torch_dtype("auto", "cpu") == torch.bfloat16  # inference: bf16 weights where fast


def test_bf16_on_a_cpu_without_it_is_legal_and_warned_once(no_bf16_cpu: list[str]) -> None:
    for _ in range(3):
        assert resolve_precision("bf16-mixed", "cpu", warn=no_bf16_cpu.append).name == "bf16-mixed"
    assert len(no_bf16_cpu) == 1 and "emulated" in no_bf16_cpu[0]
    assert resolve_precision("fp32", "cpu", warn=no_bf16_cpu.append).name == "fp32"
    assert len(no_bf16_cpu) == 1
    with pytest.raises(UserError, match=r"--precision 'fp16': use one of fp32, bf16-mixed, bf16-pure, auto"):
        resolve_precision("fp16")


def test_bf16_mixed_loads_float32_master_weights() -> None:
    assert torch_dtype("bf16-mixed") == torch.float32 and torch_dtype("bf16-pure") == torch.bfloat16
    model, _ = load("tiny", dtype="bf16-mixed")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    model, _ = load("tiny", dtype="bf16-pure")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def _adamw_step(model: torch.nn.Module, ids: torch.Tensor, policy: Precision, lr: float) -> float:
    """One AdamW step on a next-token loss; the fraction of weights whose value changed."""
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    with autocast(policy, "cpu"):
        logits = model(input_ids=ids).logits
    loss = -logprobs_from_logits(logits[:, :-1], ids[:, 1:]).mean()
    loss.backward()
    opt.step()
    changed = sum(int((p.detach() != b).sum()) for p, b in zip(model.parameters(), before, strict=True))
    return changed / sum(b.numel() for b in before)


def test_a_small_lr_moves_every_weight_in_bf16_mixed_and_almost_none_in_bf16_pure(tiny_model) -> None:
    ids = torch.randint(3, tiny_model.config.vocab_size, (8, 24), generator=torch.Generator().manual_seed(0))
    mixed = _adamw_step(copy.deepcopy(tiny_model), ids, Precision("bf16-mixed"), lr=1e-6)
    pure = _adamw_step(copy.deepcopy(tiny_model).to(torch.bfloat16), ids, Precision("bf16-pure"), lr=1e-6)
    # An AdamW step moves each weight by ≈ lr = 1e-6. float32 resolves that on weights of
    # |w| ≈ 0.02 (ulp ≈ 2e-9); bfloat16's half ulp there is 2^-6·2^-8 ≈ 6e-5, so only weights
    # with |w| < 2^8 · 1e-6 ≈ 2.6e-4 (≈ 1% of N(0, 0.02)) can move.
    assert mixed > 0.99
    assert pure < 0.05


def test_the_lr_check_refuses_pure_bf16_steps_that_round_away(tiny_model) -> None:
    pure = Precision("bf16-pure")
    model = copy.deepcopy(tiny_model).to(torch.bfloat16)
    with pytest.raises(UserError) as err:
        check_lr_moves_weights(model, 1e-6, pure)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("--train.lr 1e-06 with bf16-pure: lr 1e-06 is below half")
    check = measure_lr(model, 1e-6)
    # The tiny Llama's median |w| is that of N(0, 0.02) (≈ 0.0135, the norms' 1.0 are few):
    # in [2^-7, 2^-6), so half a bfloat16 ulp is 2^(-7-8) ≈ 3.05e-5.
    assert 2**-7 <= check.median_abs_weight < 2**-6 and check.median_half_ulp == 2**-15
    assert check.stuck_share > 0.95 and f"{check.median_half_ulp:.2g}" in msg
    warned: list[str] = []
    assert check_lr_moves_weights(model, 1e-2, pure, warn=warned.append).stuck_share < 0.1
    assert warned == []
    assert check_lr_moves_weights(model, 1e-6, Precision("bf16-mixed")) is None  # float32 weights
    # Between the two: the median weight moves (1e-4 > 3.05e-5), but every |w| ≥ 2^-5 (half
    # ulp 2^-13 ≈ 1.2e-4) stays: 12% of this model's weights, more than the 10% warned about.
    assert 0.1 < check_lr_moves_weights(model, 1e-4, pure, warn=warned.append).stuck_share < 0.2
    assert len(warned) == 1 and "below half a bfloat16 ulp for 12% of the weights" in warned[0]


def test_bf16_mixed_computes_in_bf16_and_agrees_with_fp32(tiny_model) -> None:
    ids = torch.randint(3, tiny_model.config.vocab_size, (8, 24), generator=torch.Generator().manual_seed(1))

    def loss_and_grad(policy: Precision) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
        model = copy.deepcopy(tiny_model)
        with autocast(policy, "cpu"):
            logits = model(input_ids=ids).logits
        logprobs = logprobs_from_logits(logits[:, :-1], ids[:, 1:])
        loss = -logprobs.mean()
        loss.backward()
        assert logprobs.dtype == loss.dtype == torch.float32  # the loss side stays float32
        return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()]), logits.dtype

    loss32, grad32, dtype32 = loss_and_grad(Precision("fp32"))
    loss16, grad16, dtype16 = loss_and_grad(Precision("bf16-mixed"))
    assert (dtype32, dtype16) == (torch.float32, torch.bfloat16)
    # bfloat16 keeps 8 significand bits: one rounding is ≤ 2^-9 ≈ 2e-3 relative, and the matmul
    # inputs of a 2-layer forward and backward are rounded a handful of times (accumulation
    # stays float32). Measured here: loss 1e-5, gradient 4e-3 relative; the bounds allow ~5×.
    assert abs(float(loss16 - loss32)) / float(loss32) < 1e-2
    assert float((grad16 - grad32).norm() / grad32.norm()) < 2e-2
    assert float(torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)) > 0.999
