"""Group advantage estimators: scores [B, G] → advantages [B, G] (docs/methods.md §1).

Every estimator has one signature, ``fn(scores, cfg) -> AdvantageOutput``, and is registered in
``ADVANTAGES`` by name, so the training loop looks it up instead of branching on a string.
Each docstring says what the estimator does on a group whose scores are all equal and on
non-binary scores (generalised where the formula has a meaning there, otherwise ``ValueError``).
Each is registered with its ``AdvantageProps`` (binary-only, group baseline, zero-sum, ...):
every list of estimators that share a property is ``ADVANTAGES.where(...)``, and the tests check
each property against what the estimator does.

Scores are the verifier's, one row per prompt. ``keep`` [B, G] is False for a response whose
tokens leave the loss *and* the token-mean denominator (PSR drops incorrect responses, NSR
correct ones), as when the reference code subsets the batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from agpo.configs import ConfigError, flag, require
from agpo.passk import pass_at_k
from agpo.registry import Registry

Dispersion = Literal["std", "mad", "iqr"]

# Normal-consistency factors: MAD·1.4826 and IQR/1.349 estimate σ of a Gaussian.
MAD_TO_STD = 1.4826
IQR_TO_STD = 1.349


@dataclass(frozen=True)
class AdvantageConfig:
    """Knobs of every advantage estimator (``--algo.adv.*``); each estimator reads only its own."""

    std: Literal["population", "bessel"] = "population"
    """grpo: population std (divide by G) or Bessel-corrected (G−1, as verl with eps 1e-6)."""
    eps: float = 1e-6
    """grpo, passk_analytic, grpo_passk: added to the std in the denominator, (r−μ)/(σ+eps)."""
    w_lambda: float = 0.1
    """w_reinforce: weight of a correct response (an incorrect one gets −1)."""
    beta_pos: float = 0.9
    """asym_grpo: exponent of the positive channel, A⁺ = ((1−p)/p)^beta_pos (paper: 0.9)."""
    beta_neg: float = 0.4
    """asym_grpo: exponent of the negative channel, A⁻ = −(p/(1−p))^beta_neg (paper: 0.4)."""
    asym_lambda_pos: float = 1.0
    """agpo_asym: λ_pos, scale of the positive (correct) channel; ≤ 1 keeps it non-dominant."""
    asym_gate: bool = True
    """agpo_asym: keep the group-relative term on incorrect responses (gate = 1) or drop it (0)."""
    asym_neg_const: float = -1.0
    """agpo_asym: R < 0, the constant push-down every incorrect response gets (NSR's −1)."""
    asym_delta: float = 0.1
    """agpo_asym: δ in sqrt(σ² + δ²); makes a solved group's A⁺ → 0 and a rare success large."""
    correct_threshold: float = 1.0
    """agpo_asym on non-binary scores: 'correct' (positive channel) iff score ≥ this."""
    dispersion: Dispersion = "std"
    """agpo_adaptive: σ̂ of the training group: Bessel std, MAD·1.4826 or IQR/1.349."""
    dispersion_floor: float = 0.1
    """agpo_adaptive: σ̂ is at least this fraction of the Bessel std, so |A| ≤ (G−1)/(√G·floor)."""
    passk_k: int = 4
    """passk_analytic: the k of the pass@k reward, 1 ≤ k < G (k = 1 is GRPO, population std)."""
    passk_std_norm: bool = True
    """grpo_passk: divide r_max − r_second_max by the group's Bessel std + eps, as verl does by
    default (its norm_adv_by_std_in_grpo); False: Tang et al.'s raw leave-one-out difference."""

    def __post_init__(self) -> None:
        p = "algo.adv."
        require(self.std in ("population", "bessel"), p + "std", "use population or bessel")
        require(self.eps >= 0, p + "eps", "must be ≥ 0 (1e-6 is usual)")
        require(self.w_lambda >= 0, p + "w_lambda", "must be ≥ 0 (the paper uses 0.1)")
        for name in ("beta_pos", "beta_neg"):
            require(getattr(self, name) >= 0, p + name, "must be ≥ 0 (0: REINFORCE, 0.5: GRPO)")
        require(self.asym_lambda_pos >= 0, p + "asym_lambda_pos", "must be ≥ 0 (default 1)")
        require(self.asym_neg_const <= 0, p + "asym_neg_const", "R must be ≤ 0 (default −1)")
        require(self.asym_delta >= 0, p + "asym_delta", "δ must be ≥ 0 (default 0.1)")
        require(self.dispersion in ("std", "mad", "iqr"), p + "dispersion", "use std, mad or iqr")
        require(0 < self.dispersion_floor <= 1, p + "dispersion_floor", "must be in (0, 1] (0.1)")
        require(self.passk_k >= 1, p + "passk_k", "must be ≥ 1 (and below the group size; 4)")


@dataclass(frozen=True)
class AdvantageOutput:
    """advantages [B, G] (float), keep [B, G] (bool), stats: detached scalar tensors."""

    advantages: torch.Tensor
    keep: torch.Tensor
    stats: dict[str, torch.Tensor]


class AdvantageFn(Protocol):
    def __call__(self, scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput: ...


@dataclass(frozen=True)
class AdvantageProps:
    """What an estimator is, registered with it; tests/algos checks each against its outputs."""

    binary_only: bool
    """Defined on 0/1 scores only: other scores raise ValueError (so overlong shaping, which
    makes scores non-binary, is refused with it)."""
    group_baseline: bool
    """A response's advantage depends on the other responses of its group. False: it follows
    from the response's own score alone, so all-equal groups still teach and dynamic sampling
    (which drops them) is refused with it."""
    zero_sum: bool
    """The advantages of every group sum to 0."""
    equal_groups_zero: bool
    """A group whose scores are all equal gets advantage 0 for every response."""
    drops_responses: bool
    """May return keep=False: the response leaves the loss and the token-mean denominator."""


ADVANTAGES: Registry[AdvantageFn] = Registry("advantage estimator", AdvantageFn, AdvantageProps)


def properties(name: str) -> AdvantageProps:
    """The registered properties of estimator ``name`` (unknown names fail with the valid ones)."""
    props: AdvantageProps = ADVANTAGES.props(name)
    return props


# Property sets of the estimator families below (named for reading, one per kind of estimator).
_GROUP_RELATIVE = AdvantageProps(
    binary_only=False, group_baseline=True, zero_sum=True, equal_groups_zero=True,
    drops_responses=False,
)
_PER_RESPONSE = AdvantageProps(
    binary_only=True, group_baseline=False, zero_sum=False, equal_groups_zero=False,
    drops_responses=False,
)
_PER_RESPONSE_DROPPING = dataclasses.replace(_PER_RESPONSE, drops_responses=True)


# ---------------------------------------------------------------------------------------------
# helpers


def check_group_size(name: str, cfg: AdvantageConfig, group_size: int) -> None:
    """ConfigError, naming the flags, if estimator ``name`` cannot use groups of ``group_size``
    (passk_analytic with k ≥ G, rloo or grpo_passk with G < 2): it is run on one all-wrong
    group of that size, so every estimator's own rule (a ValueError) applies before any
    sampling."""
    try:
        ADVANTAGES.get(name)(torch.zeros(1, group_size), cfg)
    except ValueError as e:
        raise ConfigError(f"{flag('algo.advantage')} {name}: {e}") from None


def _output(
    adv: torch.Tensor, scores: torch.Tensor, keep: torch.Tensor | None = None
) -> AdvantageOutput:
    keep = torch.ones_like(adv, dtype=torch.bool) if keep is None else keep
    adv = torch.where(keep, adv, torch.zeros_like(adv))
    kept = keep.to(adv.dtype)
    all_equal = (scores == scores[:, :1]).all(dim=1).to(adv.dtype)  # [B]
    stats = {
        "mean": (adv * kept).sum() / kept.sum().clamp_min(1.0),
        "abs_max": adv.abs().amax() if adv.numel() else adv.new_zeros(()),
        "pos_sum": adv.clamp_min(0).sum(),
        "neg_sum": adv.clamp_max(0).sum(),
        "frac_kept": kept.mean() if kept.numel() else kept.new_zeros(()),
        "frac_all_equal": all_equal.mean() if all_equal.numel() else all_equal.new_zeros(()),
    }
    return AdvantageOutput(adv, keep, {k: v.detach() for k, v in stats.items()})


def _require_binary(scores: torch.Tensor, name: str) -> None:
    # One host sync on a [B, G] tensor per step: scores come from the verifier, usually on CPU.
    if not ((scores == 0) | (scores == 1)).all():
        general = ADVANTAGES.where(binary_only=False)
        raise ValueError(
            f"advantage estimator {name!r} is defined on binary scores (0 or 1) only; got "
            f"non-binary scores. Use one of {', '.join(general)}, or threshold the scores in "
            "the verifier."
        )


def _check_shape(scores: torch.Tensor) -> torch.Tensor:
    if scores.ndim != 2:
        raise ValueError(f"scores must be [B, G]; got shape {tuple(scores.shape)}")
    return scores.float() if not scores.is_floating_point() else scores


def dispersion(scores: torch.Tensor, kind: Dispersion) -> torch.Tensor:
    """Per-group spread of ``scores`` [B, G] → [B]: Bessel std, MAD·1.4826 or IQR/1.349.

    Groups with fewer than 2 responses have dispersion 0. MAD is taken around the interpolated
    median (the mean of the two middle values for even G), IQR from linearly interpolated
    quartiles.
    """
    g = scores.shape[-1]
    if g < 2:
        return scores.new_zeros(scores.shape[:-1])
    if kind == "std":
        return scores.std(dim=-1, correction=1)
    if kind == "mad":
        median = scores.quantile(0.5, dim=-1, keepdim=True)  # [B, 1]
        return MAD_TO_STD * (scores - median).abs().quantile(0.5, dim=-1)
    if kind == "iqr":
        quartiles = torch.tensor([0.25, 0.75], dtype=scores.dtype, device=scores.device)
        q = scores.quantile(quartiles, dim=-1)  # [2, B]
        return (q[1] - q[0]) / IQR_TO_STD
    raise ValueError(f"unknown dispersion {kind!r}; valid: iqr, mad, std")


# ---------------------------------------------------------------------------------------------
# estimators


@ADVANTAGES.register("grpo", _GROUP_RELATIVE)
def grpo(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """GRPO (arXiv 2402.03300): A_i = (r_i − μ) / (σ + eps) within each group.

    σ is the population std by default (``--algo.adv.std bessel`` for the G−1 form verl uses).
    All-equal group: r − μ = 0, so every advantage is exactly 0 (eps keeps it finite).
    Non-binary scores: the formula is a z-score and applies unchanged.
    """
    scores = _check_shape(scores)
    mean = scores.mean(dim=1, keepdim=True)  # [B, 1]
    std = scores.std(dim=1, keepdim=True, correction=1 if cfg.std == "bessel" else 0)
    std = torch.nan_to_num(std, nan=0.0)  # Bessel std of G = 1 is NaN; the group is all-equal
    return _output((scores - mean) / (std + cfg.eps), scores)


@ADVANTAGES.register("dr_grpo", _GROUP_RELATIVE)
def dr_grpo(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """Dr.GRPO (arXiv 2503.20783): A_i = r_i − μ, no std division (pair with ``constant``).

    All-equal group: 0. Non-binary scores: applies unchanged (a plain group baseline).
    """
    scores = _check_shape(scores)
    return _output(scores - scores.mean(dim=1, keepdim=True), scores)


@ADVANTAGES.register("rloo", _GROUP_RELATIVE)
def rloo(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """RLOO: A_i = r_i − mean of the other G−1 scores = G/(G−1)·(r_i − r̄).

    All-equal group: 0. Non-binary scores: applies unchanged. G = 1 has no leave-one-out
    baseline: ValueError.
    """
    scores = _check_shape(scores)
    g = scores.shape[1]
    if g < 2:
        raise ValueError("rloo needs at least 2 responses per prompt (group size G ≥ 2)")
    loo_mean = (scores.sum(dim=1, keepdim=True) - scores) / (g - 1)  # [B, G]
    return _output(scores - loo_mean, scores)


@ADVANTAGES.register("reinforce", _PER_RESPONSE)
def reinforce(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """REINFORCE with ±1 rewards: A = +1 for a correct response, −1 for an incorrect one.

    No baseline, so all-equal groups still get ±1. Binary scores only (ValueError otherwise).
    """
    scores = _check_shape(scores)
    _require_binary(scores, "reinforce")
    return _output(2.0 * scores - 1.0, scores)


@ADVANTAGES.register("psr", _PER_RESPONSE_DROPPING)
def psr(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """PSR (arXiv 2506.01347): correct responses get +1; incorrect ones are dropped (keep=False).

    All-equal groups: all-correct → all +1, all-wrong → all dropped. Binary scores only.
    """
    scores = _check_shape(scores)
    _require_binary(scores, "psr")
    return _output(torch.ones_like(scores), scores, keep=scores == 1)


@ADVANTAGES.register("nsr", _PER_RESPONSE_DROPPING)
def nsr(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """NSR (arXiv 2506.01347): incorrect responses get −1; correct ones are dropped (keep=False).

    All-equal groups: all-wrong → all −1, all-correct → all dropped. Binary scores only.
    """
    scores = _check_shape(scores)
    _require_binary(scores, "nsr")
    return _output(-torch.ones_like(scores), scores, keep=scores == 0)


@ADVANTAGES.register("w_reinforce", _PER_RESPONSE)
def w_reinforce(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """W-REINFORCE (arXiv 2506.01347): correct → λ (``--algo.adv.w-lambda``, 0.1), incorrect → −1.

    No baseline, so all-equal groups keep λ or −1. Binary scores only.
    """
    scores = _check_shape(scores)
    _require_binary(scores, "w_reinforce")
    return _output(torch.where(scores == 1, cfg.w_lambda, -1.0).to(scores.dtype), scores)


@ADVANTAGES.register(
    "asym_grpo", dataclasses.replace(_GROUP_RELATIVE, binary_only=True, zero_sum=False)
)
def asym_grpo(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """AsymGRPO (arXiv 2604.04894): A⁺ = ((1−p)/p)^β_pos, A⁻ = −(p/(1−p))^β_neg, p = group accuracy.

    β = 0 gives REINFORCE's ±1 and β = 0.5 GRPO with population std (for r = 1,
    (1−p)/sqrt(p(1−p)) = sqrt((1−p)/p)) on groups with 0 < p < 1. All-equal groups (p ∈ {0, 1})
    get 0. Binary scores only (p is a fraction of correct responses).
    """
    scores = _check_shape(scores)
    _require_binary(scores, "asym_grpo")
    p = scores.mean(dim=1, keepdim=True)  # [B, 1]
    mixed = (p > 0) & (p < 1)
    # Placeholders where p ∈ {0, 1} keep the powers finite; those groups are zeroed below.
    p_safe = torch.where(mixed, p, torch.full_like(p, 0.5))
    pos = ((1 - p_safe) / p_safe) ** cfg.beta_pos
    neg = -((p_safe / (1 - p_safe)) ** cfg.beta_neg)
    adv = torch.where(scores == 1, pos, neg)
    return _output(torch.where(mixed, adv, torch.zeros_like(adv)), scores)


@ADVANTAGES.register(
    "agpo_asym", dataclasses.replace(_GROUP_RELATIVE, zero_sum=False, equal_groups_zero=False)
)
def agpo_asym(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """AGPO-asymmetric (arXiv 2605.05826, JD) — agpo's reading; the paper's equation was not
    reachable, so this implements docs/methods.md §1 with every knob exposed:

        z_i = (r_i − μ) / sqrt(σ² + δ²)           μ, σ: group mean and population std
        A⁺_i = λ_pos · z_i                         correct (r_i ≥ correct_threshold)
        A⁻_i = gate · z_i + R                      incorrect

    The check group of docs/methods.md (G = 8, 3 correct, σ = 0.484) gives A⁺ = 1.291,
    A⁻ = −1.775 (summed magnitudes 3.87 vs 8.87) — those numbers are the δ = 0 case. With the default δ = 0.1 the
    same group gives A⁺ = 0.625/sqrt(0.2344 + 0.01) = 1.264 and A⁻ = −1.759 (3.79 vs 8.79):
    the defaults (λ_pos 1, gate on, R −1, δ 0.1) are negative-dominant either way.
    All-equal groups: z = 0, so all-correct → 0 and all-wrong → R for every response (an
    incorrect response is pushed down even where GRPO gives 0). Non-binary scores: z uses the
    real scores; the channel is chosen by ``--algo.adv.correct-threshold``.
    """
    scores = _check_shape(scores)
    mean = scores.mean(dim=1, keepdim=True)  # [B, 1]
    var = scores.var(dim=1, keepdim=True, correction=0)
    centred = scores - mean  # [B, G]
    # With δ = 0 an all-equal group is 0/0; its group-relative part is 0 by definition.
    z = torch.where(centred == 0, 0.0, centred / torch.sqrt(var + cfg.asym_delta**2))
    gate = 1.0 if cfg.asym_gate else 0.0
    correct = scores >= cfg.correct_threshold
    adv = torch.where(correct, cfg.asym_lambda_pos * z, gate * z + cfg.asym_neg_const)
    return _output(adv, scores)


@ADVANTAGES.register("agpo_adaptive", _GROUP_RELATIVE)
def agpo_adaptive(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """AGPO-adaptive (arXiv 2605.20722): A_i = (r_i − r̄) / max(σ̂, 1e−8) on the training group.

    σ̂ is ``--algo.adv.dispersion`` (Bessel std, MAD·1.4826, IQR/1.349). MAD and IQR are 0 on
    binary groups unless about half are correct; where σ̂ ≈ 0 (≤ 1e−8) but the scores differ, σ̂
    falls back to the Bessel std as the reference code does. A robust σ̂ can also be tiny but
    non-zero on non-binary scores, so σ̂ is floored at ``dispersion_floor``·std, which bounds
    |A| ≤ (G−1)/(√G·dispersion_floor). All-equal groups: 0. Non-binary scores: apply unchanged.
    """
    scores = _check_shape(scores)
    mean = scores.mean(dim=1, keepdim=True)  # [B, 1]
    std = dispersion(scores, "std").unsqueeze(1)  # [B, 1]
    sigma = dispersion(scores, cfg.dispersion).unsqueeze(1)
    sigma = torch.where(sigma <= 1e-8, std, torch.maximum(sigma, cfg.dispersion_floor * std))
    return _output((scores - mean) / sigma.clamp_min(1e-8), scores)


@ADVANTAGES.register("passk_analytic", dataclasses.replace(_GROUP_RELATIVE, binary_only=True))
def passk_analytic(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """Pass@k training with analytical derivation (Chen et al., arXiv 2508.10751; the equations
    of its reference code RUCAIBox/Passk_Training). The G responses are split into every subset
    of k (``--algo.adv.passk-k``); a subset is rewarded 1 if any member is correct (pass@k);
    GRPO-normalised over subsets, averaged over the subsets that contain the response:

        R̄ = 1 − C(N_neg, k) / C(G, k)       the group's unbiased pass@k (N_neg incorrect of G)
        σ = sqrt(R̄ (1 − R̄))
        A_pos = (1 − R̄) / (σ + eps)                                    correct responses
        A_neg = (1 − R̄ − C(N_neg − 1, k − 1) / C(G − 1, k − 1)) / (σ + eps)   incorrect ones

    The last ratio is the chance that the other k − 1 members of a subset holding an incorrect
    response are incorrect too (the subset fails). Reading: N_rollout of the paper is G, eps is
    ``--algo.adv.eps`` (the reference code adds 1e−6), R̄ is agpo.passk.pass_at_k (the
    evaluation's own pass@k). Since C(N_neg, k)/C(G, k) = (N_neg/G)·C(N_neg−1, k−1)/C(G−1, k−1),
    A_neg < 0 < A_pos and the advantages of a group sum to 0. k = 1 is GRPO with population std
    (R̄ = p, A_pos = (1 − p)/σ, A_neg = −p/σ). Larger k shrinks the push-down of incorrect
    responses relative to GRPO (G = 8, 1 correct, k = 4: A_neg = −1/7 vs GRPO's −0.378).
    All-equal groups (R̄ ∈ {0, 1}, σ = 0): 0. So is any group with fewer than k incorrect
    responses (R̄ = 1): prompts that k samples already solve stop teaching. Binary scores only
    (the formula counts incorrect responses). ValueError unless 1 ≤ k < G: with k ≥ G every
    group's R̄ is 0 or 1 and every advantage 0.
    """
    scores = _check_shape(scores)
    _require_binary(scores, "passk_analytic")
    g, k = scores.shape[1], cfg.passk_k
    if not 1 <= k < g:
        raise ValueError(
            f"passk_analytic needs 1 ≤ k < G; got k = {k} (--algo.adv.passk-k) with groups of "
            f"G = {g} (--train.group-size): lower k or sample more responses per prompt"
        )
    # Per number of correct responses c = 0..G, from Python ints (no host sync): R̄(c) and
    # P(the k − 1 others are incorrect) = 1 − pass@(k−1) of the G − 1 others (1 when k = 1;
    # unused at c = G, where no response is incorrect).
    rho = [pass_at_k(g, c, k) for c in range(g + 1)]
    fail = [1.0 if k == 1 else 1.0 - pass_at_k(g - 1, c, k - 1) for c in range(g)] + [0.0]
    correct = scores.sum(dim=1).round().long()  # [B]
    rho_b = torch.tensor(rho, dtype=scores.dtype, device=scores.device)[correct][:, None]  # [B, 1]
    fail_b = torch.tensor(fail, dtype=scores.dtype, device=scores.device)[correct][:, None]
    sigma = torch.sqrt(rho_b * (1 - rho_b))  # [B, 1]
    adv = torch.where(scores == 1, 1 - rho_b, 1 - rho_b - fail_b) / (sigma + cfg.eps)  # [B, G]
    # σ = 0 exactly when R̄ ∈ {0, 1}: the numerators are 0 there too; with eps = 0 it is 0/0.
    return _output(torch.where(sigma > 0, adv, torch.zeros_like(adv)), scores)


@ADVANTAGES.register("grpo_passk", dataclasses.replace(_GROUP_RELATIVE, zero_sum=False))
def grpo_passk(scores: torch.Tensor, cfg: AdvantageConfig) -> AdvantageOutput:
    """Best-of-group pass@k (Tang et al., arXiv 2503.19595; verl's ``grpo_passk``): the
    leave-one-out estimator of the gradient of E[max of the G scores] (pass@G; max@G on
    continuous scores),

        A_i = max_j r_j − max_{j≠i} r_j = r_max − r_second_max for the best response, else 0,

    divided by (s + eps), s the group's Bessel std, when ``--algo.adv.passk-std-norm`` (on, as
    verl's default norm_adv_by_std_in_grpo). Reading: k is the group size G. Ties for the best
    score: max_{j≠i} r_j = r_max for each tied response, so every one of them gets 0 (verl gives
    the gap, also 0, to the one its topk picks), and the result does not depend on row order.
    Binary scores: only a group with exactly one correct response teaches, that response gets
    1/(s + eps) (G = 8: s = sqrt(1/8), A = 2√2) and every incorrect response gets 0 — no
    negative signal at all. All-equal groups: 0. Non-binary scores: apply unchanged (the gap
    between the best two). G < 2: ValueError (no second-best score).
    """
    scores = _check_shape(scores)
    if scores.shape[1] < 2:
        raise ValueError("grpo_passk needs at least 2 responses per prompt (group size G ≥ 2)")
    top2 = scores.topk(2, dim=1).values  # [B, 2]
    gap = top2[:, :1] - top2[:, 1:]  # [B, 1]; 0 on a tie for the best
    if cfg.passk_std_norm:
        # gap > 0 implies s > 0; an all-equal group (gap 0, s 0) stays 0 below even with eps 0.
        gap = torch.where(gap > 0, gap / (scores.std(dim=1, keepdim=True) + cfg.eps), 0.0)
    adv = torch.where(scores == top2[:, :1], gap, torch.zeros_like(scores))  # [B, G]
    return _output(adv, scores)
