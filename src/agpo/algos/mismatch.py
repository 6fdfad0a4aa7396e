"""Engine/trainer mismatch correction: importance weights for samples drawn by a rollout engine
(vLLM, a bf16 sampler) whose probabilities differ from the trainer's for the same weights.

Δ = log π_old^trainer − log π_engine on each sampled token ([N, T], 0 off the response mask).
The loss of a token is multiplied by a detached weight, and sequences too far off are dropped:

- token-level truncated IS (TIS): w_t = min(exp(Δ_t), C_tok);
- sequence-level IS: one weight per sequence, min(exp(Σ_t Δ_t), C_tok), on all its tokens;
- sequence masking: drop a sequence whose ratio r is outside [C_low, C] (C_low = 1/C unless
  given), with r the geometric mean exp(mean_t Δ_t) (length-independent) or the product
  exp(Σ_t Δ_t) (the exact sequence likelihood ratio, which drifts with length).

How the field's implementations map onto ``MismatchConfig`` (read in their sources):

| implementation | setting | here |
|---|---|---|
| TRL ``vllm_importance_sampling_mode="token_truncate"`` (``_clip_max`` C) | token ratio clamped to ≤ C | ``token_cap=C`` |
| TRL ``"sequence_truncate"`` | exp(Σ Δ) clamped to ≤ C, on every token | ``weight_level="sequence", token_cap=C`` |
| TRL ``"sequence_mask"`` (its default, C_max 3.0, no C_min) | exp(Σ Δ) as the weight, 0 where > C | ``weight_level="sequence", token_cap=None, seq_mask="product", seq_cap=C, seq_floor=0`` |
| verl ``rollout_is="token"`` (``rollout_is_threshold`` C, default 2.0) | min(exp(Δ_t), C) | ``token_cap=C`` |
| verl ``rollout_is="sequence"`` | min(exp(Σ Δ), C) | ``weight_level="sequence", token_cap=C`` |
| verl ``rollout_rs="geometric"`` / ``"sequence"`` (``rollout_rs_threshold`` C, ``_lower`` default 1/C) | drop r ∉ [lower, C] | ``seq_mask="geometric"`` / ``"product"``, ``seq_cap=C``, ``seq_floor=lower`` |
| NeMo-RL ``truncated_importance_sampling_type="tis"`` (``_ratio`` C) | min(exp(Δ_t), C) | ``token_cap=C`` |
| NeMo-RL ``"seq-mask-tis"`` (``_ratio`` C, ``_ratio_min`` c; ref. 0.999–1.002) | drop geometric r ∉ [c, C]; kept sequences keep the raw token ratio | ``token_cap=None, seq_mask="geometric", seq_cap=C, seq_floor=c`` |

Not implemented: masking single tokens (TRL ``token_mask``, NeMo-RL ``icepop``, verl
``rollout_rs="token"``), TRL's lower clamp C_min of the ``*_truncate`` modes, verl's token
veto and batch normalisation of the weights.

A dropped sequence has weight 0. Whether it still counts in the loss's denominator differs:
verl removes it from the response mask (``Correction.response_mask``), TRL keeps the original
mask and only zeroes the weight. The weights are detached: they change the measure the samples
were drawn from, not the objective.

Pure tensor functions: nothing leaves the device (no host syncs); stats are 0-d detached tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from agpo.configs import require

# e^20 ≈ 5e8: the weights and the logged ratios are computed from Δ clamped to ±20 (verl's
# SAFETY_BOUND, agpo's k3 clamp), so a diverged token never turns into inf or 0/0.
_LOG_CLAMP = 20.0


@dataclass(frozen=True)
class MismatchConfig:
    """Truncated importance weights and sequence masking for engine/trainer mismatch."""

    token_cap: float | None = 2.0
    """C_tok: the weight is min(ratio, C_tok); None keeps the raw ratio (NeMo-RL's seq-mask-tis)."""
    weight_level: Literal["token", "sequence"] = "token"
    """token: each token's own ratio exp(Δ_t); sequence: the product exp(Σ_t Δ_t) on all its tokens."""
    seq_mask: Literal["off", "geometric", "product"] = "off"
    """Drop whole sequences whose ratio is outside [seq_floor, seq_cap]: geometric mean of the
    token ratios, or their product."""
    seq_cap: float = 2.0
    """C: the largest sequence ratio kept."""
    seq_floor: float | None = None
    """The smallest sequence ratio kept; None: 1/seq_cap (verl's default); 0: no lower bound (TRL)."""

    def __post_init__(self) -> None:
        section = "algo.mismatch"
        require(self.token_cap is None or self.token_cap > 0, f"{section}.token_cap",
                f"{self.token_cap}: must be > 0 (or None: no truncation)")
        require(self.weight_level in ("token", "sequence"), f"{section}.weight_level",
                f"{self.weight_level!r}: use token or sequence")
        require(self.seq_mask in ("off", "geometric", "product"), f"{section}.seq_mask",
                f"{self.seq_mask!r}: use off, geometric or product")
        require(self.seq_cap > 0, f"{section}.seq_cap", f"{self.seq_cap}: must be > 0")
        require(self.floor >= 0 and self.floor <= self.seq_cap, f"{section}.seq_floor",
                f"{self.seq_floor}: must be in [0, seq_cap = {self.seq_cap}]")

    @property
    def floor(self) -> float:
        return 1.0 / self.seq_cap if self.seq_floor is None else self.seq_floor


class Correction(NamedTuple):
    """What ``correct`` returns; multiply the per-token loss by ``weights``."""

    weights: torch.Tensor
    """[N, T] float32, detached: the importance weight of each token; 0 off the response mask
    and on dropped sequences."""
    keep: torch.Tensor
    """[N] bool: the sequences the mask keeps (all True with seq_mask off)."""
    response_mask: torch.Tensor
    """[N, T]: the response mask without the dropped sequences (verl's denominator)."""
    stats: dict[str, torch.Tensor]
    """0-d detached tensors, the metrics TRL / verl / NeMo-RL log (see ``correct``)."""


def log_ratio(trainer_logprobs: torch.Tensor, engine_logprobs: torch.Tensor,
              response_mask: torch.Tensor) -> torch.Tensor:
    """Δ = log π_trainer − log π_engine [N, T], 0 off the mask (whatever the padding holds)."""
    return torch.where(response_mask.bool(), trainer_logprobs.float() - engine_logprobs.float(), 0.0)


def sequence_log_ratio(delta: torch.Tensor, response_mask: torch.Tensor,
                       kind: Literal["geometric", "product"]) -> torch.Tensor:
    """log of the sequence ratio [N] from Δ [N, T]: Σ_t Δ_t (product) or its mean over the
    sequence's tokens (geometric; 0 for a sequence without tokens)."""
    total = (delta * response_mask).sum(-1)  # [N]
    if kind == "product":
        return total
    return total / response_mask.sum(-1).clamp_min(1)


def correct(trainer_logprobs: torch.Tensor, engine_logprobs: torch.Tensor,
            response_mask: torch.Tensor, cfg: MismatchConfig) -> Correction:
    """Importance weights [N, T], kept sequences [N] and stats for the trainer's π_old [N, T]
    and the engine's log-probs [N, T] of the same sampled tokens.

    stats (``mismatch/`` + name): ``token_gap_mean`` / ``token_gap_max``, |Δ| over the masked
    tokens (TRL's sampling_logp_difference); ``seq_ratio_mean`` / ``_min`` / ``_max``, the
    sequence ratio of ``cfg.seq_mask`` (geometric when off) over sequences with tokens;
    ``seq_masked_frac``, the share of those sequences dropped; ``token_truncated_frac``, the
    share of masked tokens whose weight the cap lowered; ``tokens`` and ``sequences``, the
    counts the means are over (to weight them when combining batches).
    """
    mask = response_mask.to(torch.float32)  # [N, T]
    delta = log_ratio(trainer_logprobs, engine_logprobs, mask).detach()  # [N, T]
    has_tokens = mask.sum(-1) > 0  # [N]
    kind = "product" if cfg.seq_mask == "product" else "geometric"
    seq_log = sequence_log_ratio(delta, mask, kind)  # [N]
    if cfg.weight_level == "sequence":
        raw = sequence_log_ratio(delta, mask, "product").clamp(-_LOG_CLAMP, _LOG_CLAMP).exp()  # [N]
        raw = raw.unsqueeze(-1).expand_as(mask)  # [N, T]
    else:
        raw = delta.clamp(-_LOG_CLAMP, _LOG_CLAMP).exp()  # [N, T]
    weights = raw if cfg.token_cap is None else raw.clamp(max=cfg.token_cap)
    truncated = (raw > cfg.token_cap) if cfg.token_cap is not None else torch.zeros_like(mask, dtype=torch.bool)
    if cfg.seq_mask == "off":
        keep = torch.ones_like(has_tokens)
    else:
        # Compared in log space: exp of a product ratio overflows long before its log does.
        low = math.log(cfg.floor) if cfg.floor > 0 else -math.inf
        keep = (seq_log >= low) & (seq_log <= math.log(cfg.seq_cap))  # [N]
    kept_mask = mask * keep.unsqueeze(-1)  # [N, T]
    weights = weights * kept_mask

    tokens = mask.sum()
    sequences = has_tokens.sum().float()
    gap = delta.abs()  # 0 off the mask
    seq_ratio = seq_log.clamp(-_LOG_CLAMP, _LOG_CLAMP).exp()  # [N]
    stats = {
        "mismatch/token_gap_mean": gap.sum() / tokens.clamp_min(1),
        "mismatch/token_gap_max": gap.amax() if gap.numel() else gap.new_zeros(()),
        "mismatch/seq_ratio_mean": torch.where(has_tokens, seq_ratio, 0.0).sum() / sequences.clamp_min(1),
        "mismatch/seq_ratio_min": _extreme(seq_ratio, has_tokens, largest=False),
        "mismatch/seq_ratio_max": _extreme(seq_ratio, has_tokens, largest=True),
        "mismatch/seq_masked_frac": (has_tokens & ~keep).sum() / sequences.clamp_min(1),
        "mismatch/token_truncated_frac": (truncated.float() * mask).sum() / tokens.clamp_min(1),
        "mismatch/tokens": tokens,
        "mismatch/sequences": sequences,
    }
    return Correction(weights.detach(), keep, kept_mask.to(response_mask.dtype),
                      {k: v.detach().float() for k, v in stats.items()})


def _extreme(x: torch.Tensor, valid: torch.Tensor, largest: bool) -> torch.Tensor:
    """max (or min) of x [N] over valid [N]; the neutral ratio 1 when nothing is valid."""
    if x.numel() == 0:
        return x.new_ones(())
    fill = -math.inf if largest else math.inf
    picked = torch.where(valid, x, fill)
    value = picked.amax() if largest else picked.amin()
    return torch.where(valid.any(), value, 1.0)


__all__ = ["Correction", "MismatchConfig", "correct", "log_ratio", "sequence_log_ratio"]
