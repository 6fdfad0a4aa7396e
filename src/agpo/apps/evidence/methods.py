"""The methods an evidence run (and the testbed demo) compares: a label and an ``algo`` section
each, and the update epochs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agpo.algos.advantages import AdvantageConfig
from agpo.algos.config import AlgoConfig
from agpo.errors import UserError


@dataclass(frozen=True)
class Method:
    """One compared method: a label and its ``algo`` section (plus update epochs)."""

    label: str
    algo: AlgoConfig
    epochs: int = 1

    def apply(self, base: AlgoConfig) -> AlgoConfig:
        """``base`` with this method's choices: the fields its ``algo`` sets away from the
        defaults replace ``base``'s, the rest of ``base`` (a KL coefficient, clip bounds, ...)
        stays, so a run config's algo section is shared by every method."""
        return _merge(base, self.algo, AlgoConfig())


def _merge(base: Any, mine: Any, default: Any) -> Any:
    changes = {}
    for f in dataclasses.fields(mine):
        value, neutral = getattr(mine, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            changes[f.name] = _merge(getattr(base, f.name), value, neutral)
        elif value != neutral:
            changes[f.name] = value
    return dataclasses.replace(base, **changes)


def _asym(beta_pos: float, beta_neg: float) -> AlgoConfig:
    adv = AdvantageConfig(beta_pos=beta_pos, beta_neg=beta_neg)
    return AlgoConfig(advantage="asym_grpo", adv=adv)


def _methods() -> dict[str, Method]:
    adaptive = AlgoConfig(advantage="agpo_adaptive", adaptive_clip=True, adaptive_temperature=True)
    return {
        "grpo": Method("GRPO", AlgoConfig(advantage="grpo")),
        "w_reinforce": Method("W-REINFORCE", AlgoConfig(advantage="w_reinforce")),
        "asym_grpo": Method("AsymGRPO (0.9/0.4)", AlgoConfig(advantage="asym_grpo")),
        "agpo_asym": Method("AGPO-asymmetric", AlgoConfig(advantage="agpo_asym")),
        # 4 update epochs per batch, so its clip controller acts (with one on-policy epoch the
        # ratio is exactly 1 and no clip range does anything); its probe groups count toward
        # the token budget, which leaves it fewer RL steps than the others.
        "agpo_adaptive": Method("AGPO-adaptive", adaptive, epochs=4),
        "dr_grpo": Method("Dr.GRPO", AlgoConfig(advantage="dr_grpo", aggregation="constant")),
        "rloo": Method("RLOO", AlgoConfig(advantage="rloo")),
        "psr": Method("PSR", AlgoConfig(advantage="psr")),
        "nsr": Method("NSR", AlgoConfig(advantage="nsr")),
        # Clip-higher changes the objective only where the ratio leaves 1, so it gets 4 epochs.
        "grpo_clip_higher": Method("GRPO+clip-higher", AlgoConfig(clip_high=0.28), epochs=4),
        "grpo_4_epochs": Method("GRPO, 4 epochs", AlgoConfig(), epochs=4),  # clip-higher's control
        # AsymGRPO's entropy claim, one channel at a time (β = 0.5 on both sides is GRPO).
        "asym_pos_only": Method("AsymGRPO β+ 0.9/β− 0.5", _asym(0.9, 0.5)),
        "asym_neg_only": Method("AsymGRPO β+ 0.5/β− 0.75", _asym(0.5, 0.75)),
        # The pass@k-objective baselines: the direct competitors on keeping the boundary.
        "passk_analytic": Method("Pass@k-analytic (k=4)", AlgoConfig(advantage="passk_analytic")),
        "grpo_passk": Method("GRPO-pass@k (best of group)", AlgoConfig(advantage="grpo_passk")),
    }


METHODS = _methods()


def check_methods(methods: Sequence[str]) -> None:
    """The --methods check of every command that compares methods: at least one name, no name
    twice, every name in METHODS (the error lists the valid ones)."""
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UserError(f"--methods {' '.join(bad)}: valid names are {', '.join(METHODS)}")
    twice = sorted({m for m in methods if list(methods).count(m) > 1})
    if twice:
        raise UserError(f"--methods: {', '.join(twice)} named twice")


def label_of(name: str) -> str:
    """The display label of a method name ("base" for the base model)."""
    return "base" if name == "base" else METHODS[name].label
