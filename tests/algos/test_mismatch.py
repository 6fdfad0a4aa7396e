"""Engine/trainer mismatch correction: truncated IS weights, sequence masking and their stats,
on a batch worked by hand; and each framework's reading as a setting of MismatchConfig."""

from __future__ import annotations

import math

import pytest
import torch

from agpo.algos.mismatch import MismatchConfig, correct, log_ratio, sequence_log_ratio
from agpo.errors import UserError

L2, L3 = math.log(2), math.log(3)
# Δ = log π_trainer − log π_engine, three responses of up to 3 tokens (row 1 has 2):
#   row 0: Δ = [0, ln 4, −ln 2]   token ratios [1, 4, 1/2]
#   row 1: Δ = [ln 3, ln 3, pad]  token ratios [3, 3]
#   row 2: Δ = [−ln 4, 0, 0]      token ratios [1/4, 1, 1]
DELTA = torch.tensor([[0.0, 2 * L2, -L2], [L3, L3, 0.0], [-2 * L2, 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1]])
TRAINER = torch.tensor([[-1.0, -2.0, -0.5], [-0.7, -1.5, -9.0], [-3.0, -0.1, -0.2]])
ENGINE = TRAINER - DELTA
ENGINE[1, 2] = float("nan")  # padding may hold anything: it never reaches the result
# Sequence ratios: geometric exp(mean Δ) = [2^(1/3) ≈ 1.26, 3, 4^(−1/3) ≈ 0.63];
#                  product   exp(Σ Δ)    = [2, 9, 1/4].
GEO = torch.tensor([2 ** (1 / 3), 3.0, 4 ** (-1 / 3)])


def _close(x: torch.Tensor, y: object) -> None:
    torch.testing.assert_close(x, torch.as_tensor(y, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_log_ratio_and_sequence_ratios() -> None:
    delta = log_ratio(TRAINER, ENGINE, MASK)
    _close(delta, DELTA)  # the NaN in the padding became 0
    _close(sequence_log_ratio(delta, MASK, "geometric").exp(), GEO)
    _close(sequence_log_ratio(delta, MASK, "product").exp(), [2.0, 9.0, 0.25])


def test_token_tis_with_geometric_sequence_mask() -> None:
    # verl rollout_is=token (2.0) + rollout_rs=geometric (2.0, lower 1/2).
    out = correct(TRAINER, ENGINE, MASK, MismatchConfig(token_cap=2.0, seq_mask="geometric", seq_cap=2.0))
    # Row 1's geometric ratio 3 > 2: dropped. Rows 0 and 2 (1.26, 0.63 ∈ [0.5, 2]) keep
    # min(ratio, 2) per token: [1, min(4, 2), 1/2] and [1/4, 1, 1].
    assert out.keep.tolist() == [True, False, True]
    _close(out.weights, [[1.0, 2.0, 0.5], [0.0, 0.0, 0.0], [0.25, 1.0, 1.0]])
    assert out.response_mask.tolist() == [[1, 1, 1], [0, 0, 0], [1, 1, 1]]
    assert out.response_mask.dtype == MASK.dtype and not out.weights.requires_grad
    s = out.stats
    # |Δ| over the 8 tokens: ln4 + ln2 + 2·ln3 + ln4 = 5·ln2 + 2·ln3 = 5.6630 → mean 0.70787.
    _close(s["mismatch/token_gap_mean"], (5 * L2 + 2 * L3) / 8)
    _close(s["mismatch/token_gap_max"], 2 * L2)
    # Geometric ratios 1.26, 3, 0.63: mean 1.62996.
    _close(s["mismatch/seq_ratio_mean"], GEO.mean())
    _close(s["mismatch/seq_ratio_min"], 4 ** (-1 / 3))
    _close(s["mismatch/seq_ratio_max"], 3.0)
    _close(s["mismatch/seq_masked_frac"], 1 / 3)
    # Ratios above the cap 2: the 4 of row 0 and both 3s of row 1 → 3 of 8 tokens.
    _close(s["mismatch/token_truncated_frac"], 3 / 8)
    _close(s["mismatch/tokens"], 8.0)
    _close(s["mismatch/sequences"], 3.0)


def test_product_sequence_mask_drops_what_the_geometric_mean_keeps() -> None:
    # Product ratios [2, 9, 1/4] against [1/2.5, 2.5]: row 2's 1/4 is out though its
    # geometric mean 0.63 is in; row 1's 9 is out.
    out = correct(TRAINER, ENGINE, MASK, MismatchConfig(seq_mask="product", seq_cap=2.5))
    assert out.keep.tolist() == [True, False, False]
    _close(out.stats["mismatch/seq_ratio_mean"], (2 + 9 + 0.25) / 3)
    _close(out.stats["mismatch/seq_masked_frac"], 2 / 3)


def test_without_a_sequence_mask_every_sequence_stays() -> None:
    # TRL token_truncate / verl rollout_is=token / NeMo-RL tis with C = 3.
    out = correct(TRAINER, ENGINE, MASK, MismatchConfig(token_cap=3.0))
    assert out.keep.tolist() == [True, True, True]
    _close(out.weights, [[1.0, 3.0, 0.5], [3.0, 3.0, 0.0], [0.25, 1.0, 1.0]])
    _close(out.stats["mismatch/token_truncated_frac"], 1 / 8)  # only the 4; 3 is not above 3
    _close(out.stats["mismatch/seq_masked_frac"], 0.0)


def test_sequence_level_weights() -> None:
    # TRL sequence_truncate / verl rollout_is=sequence, C = 3: min(exp(ΣΔ), 3) = [2, 3, 1/4] on
    # every token of the sequence; row 1's two tokens were truncated (9 > 3): 2 of 8.
    out = correct(TRAINER, ENGINE, MASK, MismatchConfig(weight_level="sequence", token_cap=3.0))
    _close(out.weights, [[2.0, 2.0, 2.0], [3.0, 3.0, 0.0], [0.25, 0.25, 0.25]])
    _close(out.stats["mismatch/token_truncated_frac"], 2 / 8)
    # TRL's default sequence_mask (C_max 3, no C_min): the raw product ratio, 0 where above 3.
    trl = MismatchConfig(weight_level="sequence", token_cap=None, seq_mask="product", seq_cap=3.0, seq_floor=0.0)
    out = correct(TRAINER, ENGINE, MASK, trl)
    _close(out.weights, [[2.0, 2.0, 2.0], [0.0, 0.0, 0.0], [0.25, 0.25, 0.25]])


def test_nemo_rl_seq_mask_tis_keeps_raw_token_ratios() -> None:
    # seq-mask-tis with [0.5, 2]: row 1 dropped (geometric 3); kept rows keep the raw 4.
    cfg = MismatchConfig(token_cap=None, seq_mask="geometric", seq_cap=2.0, seq_floor=0.5)
    out = correct(TRAINER, ENGINE, MASK, cfg)
    _close(out.weights, [[1.0, 4.0, 0.5], [0.0, 0.0, 0.0], [0.25, 1.0, 1.0]])
    _close(out.stats["mismatch/token_truncated_frac"], 0.0)


def test_no_mismatch_is_weight_one_and_diverged_tokens_stay_finite() -> None:
    out = correct(TRAINER, TRAINER.clone(), MASK, MismatchConfig(seq_mask="geometric"))
    _close(out.weights, MASK.float())
    _close(out.stats["mismatch/token_gap_max"], 0.0)
    _close(out.stats["mismatch/seq_ratio_min"], 1.0)
    # A token the engine gave −1e4 (Δ = 1e4): capped at C, its sequence's product dropped.
    engine = TRAINER.clone()
    engine[0, 0] = -1e4
    out = correct(TRAINER, engine, MASK, MismatchConfig(seq_mask="product"))
    assert torch.isfinite(out.weights).all() and out.keep.tolist() == [False, True, True]
    _close(out.stats["mismatch/seq_ratio_max"], math.exp(20.0))  # the logged ratio is clamped


def test_an_empty_batch_reports_neutral_stats() -> None:
    empty = torch.zeros(2, 3, dtype=torch.long)
    out = correct(TRAINER[:2], ENGINE[:2], empty, MismatchConfig(seq_mask="geometric"))
    assert out.weights.abs().sum() == 0
    for key, value in out.stats.items():
        assert torch.isfinite(value), key
    _close(out.stats["mismatch/seq_ratio_max"], 1.0)
    _close(out.stats["mismatch/token_gap_mean"], 0.0)


@pytest.mark.parametrize(("field", "value", "msg"), [
    ("token_cap", 0.0, "--algo.mismatch.token-cap: 0.0: must be > 0 (or None: no truncation)"),
    ("seq_cap", -1.0, "--algo.mismatch.seq-cap: -1.0: must be > 0"),
    ("seq_floor", 3.0, "--algo.mismatch.seq-floor: 3.0: must be in [0, seq_cap = 2.0]"),
    ("seq_mask", "tokens", "--algo.mismatch.seq-mask: 'tokens': use off, geometric or product"),
])
def test_bad_settings_are_refused(field: str, value: object, msg: str) -> None:
    with pytest.raises(UserError) as err:
        MismatchConfig(**{field: value})
    assert str(err.value) == msg
