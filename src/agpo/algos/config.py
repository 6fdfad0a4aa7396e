"""``AlgoConfig``: the ``algo`` section of a run config (``--algo.*`` flags).

Every method is one flag away: ``--algo.advantage agpo_asym``, ``--algo.clip-high 0.28``,
``--algo.aggregation constant``. Names are checked against the registries, and bad combinations
are rejected with a message naming the flag and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agpo.configs import require, require_name
from agpo.algos.advantages import ADVANTAGES, AdvantageConfig, properties
from agpo.algos.aggregation import AGGREGATIONS
from agpo.algos.controllers import AdaptiveConfig
from agpo.algos.kl import KL_ESTIMATORS
from agpo.algos.mismatch import MismatchConfig
from agpo.algos.objectives import OBJECTIVES


@dataclass(frozen=True)
class AlgoConfig:
    """How scores become a loss: advantage estimator, objective, aggregation, KL, controllers."""

    advantage: str = "grpo"
    """Advantage estimator: a name in agpo.algos.ADVANTAGES, listed in this section's
    description (taken from the registry)."""
    adv: AdvantageConfig = field(default_factory=AdvantageConfig)
    """Knobs of the advantage estimators."""
    objective: str = "ppo_clip"
    """Per-token objective: ppo_clip (PPO's clipped ratio) or pg (plain policy gradient)."""
    clip_low: float = 0.2
    """ε_low: the ratio is clipped below at 1 − ε_low."""
    clip_high: float = 0.2
    """ε_high: the ratio is clipped above at 1 + ε_high (DAPO's clip-higher: 0.28)."""
    aggregation: str = "token_mean"
    """Loss aggregation: token_mean (DAPO), seq_mean_token_mean (GRPO), seq_mean_token_sum,
    constant (Dr.GRPO: ÷ sequences·max_new_tokens)."""
    kl_estimator: str = "k3"
    """KL estimator of the reference-model penalty: k1, k2 or k3."""
    kl_coef: float = 0.0
    """β of the KL penalty to the reference model (GRPO: 0.04; 0: no reference model)."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus subtracted from the loss (0: none)."""
    adaptive_clip: bool = False
    """AGPO-adaptive's clip controller: a per-group symmetric ε replaces clip-low/clip-high."""
    adaptive_temperature: bool = False
    """AGPO-adaptive's temperature controller: a probe group sets each prompt's sampling τ."""
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    """AGPO-adaptive's probe and controller knobs."""
    dynamic_sampling: bool = False
    """DAPO: keep only groups whose scores are not all equal, over-generating to fill the batch."""
    max_sampling_rounds: int = 3
    """Dynamic sampling: most generation rounds per step before training on a smaller batch."""
    overlong_cache: int = 0
    """DAPO overlong shaping: penalise the last L_cache tokens of the budget (0: off)."""
    mismatch_correction: bool = False
    """Engine/trainer mismatch correction (agpo.algos.mismatch): each token's objective is
    multiplied by a truncated importance weight π_old^trainer / π_engine (--algo.mismatch.*),
    and sequences the masking drops leave the loss and its denominator. Off by default: with the
    transformers engine the two log-probs are the same computation. Adds a trainer scoring pass
    on-policy. The mismatch/ metrics are logged whenever both log-probs exist."""
    mismatch: MismatchConfig = field(default_factory=MismatchConfig)
    """Knobs of --algo.mismatch-correction."""

    def __post_init__(self) -> None:
        require_name(self.advantage, ADVANTAGES.names(), "algo.advantage")
        require_name(self.objective, OBJECTIVES.names(), "algo.objective")
        require_name(self.aggregation, AGGREGATIONS.names(), "algo.aggregation")
        require_name(self.kl_estimator, KL_ESTIMATORS.names(), "algo.kl_estimator")
        require(0 < self.clip_low < 1, "algo.clip_low", "must be in (0, 1) (0.2 is usual)")
        require(self.clip_high > 0, "algo.clip_high", "must be > 0 (0.2; clip-higher 0.28)")
        require(self.kl_coef >= 0, "algo.kl_coef", "must be ≥ 0 (0 disables the KL penalty)")
        require(self.max_sampling_rounds >= 1, "algo.max_sampling_rounds", "must be ≥ 1")
        require(self.overlong_cache >= 0, "algo.overlong_cache", "must be ≥ 0 (0: off)")
        require(
            not self.adaptive_clip or self.objective == "ppo_clip",
            "algo.adaptive_clip",
            f"needs --algo.objective ppo_clip (got {self.objective!r}); pg has no clip",
        )
        require(
            not (
                self.advantage == "agpo_adaptive"
                and self.adaptive.dispersion != self.adv.dispersion
            ),
            "algo.adaptive.dispersion",
            f"is {self.adaptive.dispersion!r} but --algo.adv.dispersion is "
            f"{self.adv.dispersion!r}; AGPO-adaptive uses one dispersion for probe and training "
            "group: set both to the same value",
        )
        require(
            not (self.dynamic_sampling and not properties(self.advantage).group_baseline),
            "algo.dynamic_sampling",
            f"drops all-equal groups, which {self.advantage!r} still learns from (it has no "
            "group baseline); turn it off or use a group-relative estimator",
        )

    @property
    def uses_reference(self) -> bool:
        """A reference model is needed only for the KL penalty."""
        return self.kl_coef > 0

    @property
    def uses_probe(self) -> bool:
        """The probe group is sampled when either AGPO-adaptive controller is on."""
        return self.adaptive_clip or self.adaptive_temperature


# The estimator names in the section's --help description come from the registry, so the list
# cannot drift from what is accepted (tyro shows the class docstring as the group description).
AlgoConfig.__doc__ = f"{AlgoConfig.__doc__} Advantage estimators: {', '.join(ADVANTAGES.names())}."
