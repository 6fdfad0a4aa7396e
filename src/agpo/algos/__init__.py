"""agpo.algos — the methods as pure tensor functions, registered by name (no I/O, no model).

advantages   scores [B, G] → advantages [B, G]        ADVANTAGES (grpo, agpo_asym, ...), each
             registered with its AdvantageProps (binary_only, zero_sum, ...)
objectives   log-probs [N, T] → per-token loss [N, T] OBJECTIVES (ppo_clip, pg)
aggregation  per-token loss [N, T] → scalar            AGGREGATIONS (token_mean, ...)
kl           log-probs [N, T] → KL penalty [N, T]      KL_ESTIMATORS (k1, k2, k3)
controllers  AGPO-adaptive's formulas: probe statistics, τ, ε, step drift (their running
             state and when it is committed: agpo.train.control)
dapo         dynamic-sampling filter, overlong shaping
config       AlgoConfig, the ``algo`` section of a run config
"""

from agpo.configs import ConfigError
from agpo.algos.advantages import (
    ADVANTAGES,
    AdvantageConfig,
    AdvantageOutput,
    AdvantageProps,
    dispersion,
    properties,
)
from agpo.algos.aggregation import AGGREGATIONS, LossNorm
from agpo.algos.config import AlgoConfig
from agpo.algos.controllers import (
    AdaptiveConfig,
    ProbeStats,
    adaptive_epsilons,
    adaptive_temperatures,
    expand_groups,
    probe_statistics,
    step_drift,
)
from agpo.algos.dapo import informative_groups, overlong_penalty
from agpo.algos.kl import KL_ESTIMATORS
from agpo.algos.objectives import OBJECTIVES

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "OBJECTIVES",
    "AdaptiveConfig",
    "AdvantageConfig",
    "AdvantageOutput",
    "AdvantageProps",
    "AlgoConfig",
    "ConfigError",
    "LossNorm",
    "ProbeStats",
    "adaptive_epsilons",
    "adaptive_temperatures",
    "dispersion",
    "expand_groups",
    "informative_groups",
    "overlong_penalty",
    "probe_statistics",
    "properties",
    "step_drift",
]
