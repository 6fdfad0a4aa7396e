"""Numeric precision of training: which dtype the weights live in and which the matmuls run in.

| name         | weights + optimizer state | forward / backward matmuls | log-probs, entropy, loss |
|--------------|---------------------------|----------------------------|--------------------------|
| ``fp32``     | float32                   | float32                    | float32                  |
| ``bf16-mixed`` | float32 (master copy)   | bfloat16 (``torch.autocast``, or FSDP2's ``MixedPrecisionPolicy``) | float32 |
| ``bf16-pure``  | bfloat16                | bfloat16                   | float32                  |

``bf16-mixed`` is how the field trains (verl, TRL/accelerate, torchtune): an optimizer step of
size ≈ lr lands on a float32 weight, whose ulp is 2^-23 of its magnitude, so lr 1e-6 moves it.
In ``bf16-pure`` the same step must exceed half a bfloat16 ulp (2^-8 of the magnitude: 8 bits of
significand) or it rounds back to the old value; ``check_lr_moves_weights`` measures that on
the model's weights and refuses a learning rate that would leave them in place.

Log-probs, entropy and the loss stay float32 in every mode: ``agpo.ops`` casts the LM head's
logits to float32 before the log-sum-exp, and autocast leaves float32 reductions alone.

``auto`` resolves once, with the reason to print: bf16-mixed on a CUDA device with bfloat16 and
on a CPU with bfloat16 instructions (AMX-BF16 or AVX512-BF16, read from /proc/cpuinfo), fp32
elsewhere: without them a CPU emulates bfloat16 matmuls, far slower than float32 (a 512×512
matmul on one thread of a 2-core AVX2 EPYC, on a shared machine: 9 ms float32, 620 ms bfloat16).
Asking for bf16 there is legal and warned about once.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from agpo.errors import UserError

PrecisionName = Literal["fp32", "bf16-mixed", "bf16-pure"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16-mixed", "bf16-pure")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# bfloat16 keeps 8 significand bits (7 stored + the implicit one): for |w| in [2^e, 2^(e+1))
# its ulp is 2^(e-7), and a change smaller than half of that rounds back to w.
BF16_SIGNIFICAND_BITS = 8
# An lr that leaves more than this share of the weights unmovable is warned about.
STUCK_WARN_SHARE = 0.10
_SAMPLE = 1 << 20  # weights looked at by check_lr_moves_weights (a strided sample beyond this)

_warned: set[str] = set()


def _stderr_warning(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


@dataclass(frozen=True)
class Precision:
    """A resolved precision policy (never ``auto``) and why it was chosen."""

    name: PrecisionName
    reason: str = ""

    @property
    def param_dtype(self) -> torch.dtype:
        """The dtype the weights and the optimizer state are kept in."""
        return torch.bfloat16 if self.name == "bf16-pure" else torch.float32

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the forward and backward matmuls run in."""
        return torch.float32 if self.name == "fp32" else torch.bfloat16

    @property
    def mixed(self) -> bool:
        """float32 master weights with bfloat16 compute (autocast, or FSDP2's policy)."""
        return self.name == "bf16-mixed"


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The bfloat16 instruction flags (amx_bf16, avx512_bf16) this CPU reports in
    /proc/cpuinfo (``cpuinfo``: that file's text, for tests); [] where it cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break  # every core reports the same flags
    return [f for f in CPU_BF16_FLAGS if f in flags]


def bf16_is_fast(device: torch.device | str) -> tuple[bool, str]:
    """Whether ``device`` runs bfloat16 matmuls natively, and the reason in words."""
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, f"CUDA device {torch.cuda.get_device_name(device)} supports bfloat16"
        return False, "this CUDA device has no bfloat16 support"
    if device.type == "cpu":
        flags = cpu_bf16_flags()
        if flags:
            return True, f"the CPU has bfloat16 instructions ({', '.join(flags)})"
        return False, ("the CPU has no bfloat16 instructions (no amx_bf16 / avx512_bf16 in "
                       f"/proc/cpuinfo; torch's CPU capability: "
                       f"{torch.backends.cpu.get_cpu_capability()})")
    return False, f"no bfloat16 detection for device type {device.type}"


def resolve_precision(spec: str, device: torch.device | str = "cpu", *,
                      flag: str = "--precision",
                      warn: Callable[[str], None] = _stderr_warning) -> Precision:
    """The policy ``spec`` (fp32 | bf16-mixed | bf16-pure | auto) on ``device``; ``auto``
    resolved here, once. bf16 asked for on a device without native bfloat16 is kept and
    ``warn``-ed about once per process (it is correct, only slow)."""
    if spec not in (*PRECISIONS, "auto"):
        raise UserError(f"{flag} {spec!r}: use one of {', '.join((*PRECISIONS, 'auto'))}")
    fast, why = bf16_is_fast(device)
    if spec == "auto":
        return Precision("bf16-mixed" if fast else "fp32", f"auto: {why}")
    if spec != "fp32" and not fast and spec not in _warned:
        _warned.add(spec)
        warn(f"{flag} {spec}: {why}; bfloat16 matmuls are emulated there and run several "
             "times slower than float32 (fp32 gives the same training, faster)")
    return Precision(spec, "asked for")  # type: ignore[arg-type]  # checked above


def autocast(policy: Precision, device: torch.device | str) -> contextlib.AbstractContextManager[None]:
    """The forward/backward context of ``policy``: bfloat16 autocast for bf16-mixed, nothing
    for fp32 and bf16-pure (whose weights already are the compute dtype). A model sharded by
    ``agpo.train.fsdp.shard`` casts through FSDP2's policy instead and needs none."""
    if not policy.mixed:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


@dataclass(frozen=True)
class LrCheck:
    """What a step of size ``lr`` does to bfloat16 weights (``check_lr_moves_weights``)."""

    lr: float
    median_abs_weight: float
    median_half_ulp: float
    """Half a bfloat16 ulp at the median |w|: the smallest change that moves a typical weight."""
    stuck_share: float
    """Share of the weights whose half ulp exceeds lr: a step of size ≈ lr leaves them as they are."""

    def sentence(self) -> str:
        return (f"lr {self.lr:g} is below half a bfloat16 ulp for {self.stuck_share:.0%} of the "
                f"weights (median |w| {self.median_abs_weight:.3g}, half ulp there "
                f"{self.median_half_ulp:.3g})")


def measure_lr(model: torch.nn.Module, lr: float) -> LrCheck:
    """How many trainable weights of ``model`` a step of size ``lr`` can move in bfloat16.

    An Adam-family step changes each weight by about lr (m̂/√v̂ is of order 1), so a weight
    moves only where lr exceeds half a bfloat16 ulp of it, 2^(⌊log2|w|⌋ − 8). Zeros are left
    out (any step moves them); beyond 2^20 weights a strided sample is measured.
    """
    parts = [p.detach().flatten() for p in model.parameters() if p.requires_grad and p.is_floating_point()]
    total = sum(x.numel() for x in parts)
    stride = max(1, total // _SAMPLE)
    w = torch.cat([x[::stride].float().abs().cpu() for x in parts]) if parts else torch.zeros(0)
    w = w[w > 0]
    if w.numel() == 0:
        return LrCheck(lr, 0.0, 0.0, 0.0)
    _, exp = torch.frexp(w)  # w = m · 2^exp with m in [0.5, 1): ⌊log2 w⌋ = exp − 1
    half_ulp = torch.ldexp(torch.ones_like(w), exp - 1 - BF16_SIGNIFICAND_BITS)
    median = w.median()
    _, m_exp = torch.frexp(median)
    return LrCheck(
        lr=lr,
        median_abs_weight=float(median),
        median_half_ulp=float(torch.ldexp(torch.ones(()), m_exp - 1 - BF16_SIGNIFICAND_BITS)),
        stuck_share=float((half_ulp > lr).float().mean()),
    )


def check_lr_moves_weights(model: torch.nn.Module, lr: float, precision: Precision, *,
                           flag: str = "--train.lr",
                           warn: Callable[[str], None] = _stderr_warning) -> LrCheck | None:
    """Refuse (``UserError``) a bf16-pure run whose ``lr`` is below half a bfloat16 ulp of the
    typical (median) weight: its steps would round away and training would silently do
    nothing. ``warn`` when more than 10% of the weights are stuck. Nothing to check for fp32
    and bf16-mixed (float32 weights; returns None)."""
    if precision.name != "bf16-pure":
        return None
    check = measure_lr(model, lr)
    if check.median_half_ulp and lr < check.median_half_ulp:
        raise UserError(f"{flag} {lr:g} with bf16-pure: {check.sentence()}, so the optimizer "
                        "steps round back to the old weights; use bf16-mixed (float32 master "
                        f"weights) or an lr of at least {check.median_half_ulp:.2g}")
    if check.stuck_share > STUCK_WARN_SHARE:
        warn(f"{flag} {lr:g} with bf16-pure: {check.sentence()}; those weights will not train "
             "(bf16-mixed keeps float32 master weights)")
    return check


__all__ = [
    "CPU_BF16_FLAGS", "PRECISIONS", "LrCheck", "Precision", "PrecisionName", "autocast",
    "bf16_is_fast", "check_lr_moves_weights", "cpu_bf16_flags", "measure_lr", "resolve_precision",
]
