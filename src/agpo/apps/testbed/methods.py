"""The methods the demo and the evidence run compare: a label and an ``algo`` section each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agpo.algos.advantages import AdvantageConfig
from agpo.algos.config import AlgoConfig
from agpo.errors import UserError

TASK = "testbed_add"
TOKENS_PER_RESPONSE = 5  # marker + 3 digits + EOS: every testbed response has this length


@dataclass(frozen=True)
class Method:
    """One compared method: a label and its ``algo`` section (plus update epochs)."""

    label: str
    algo: AlgoConfig
    epochs: int = 1


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
        # METHODS §2: 4 update epochs per batch, so its clip controller acts; its probe groups
        # count toward the token budget, which leaves it fewer RL steps than the others.
        "agpo_adaptive": Method("AGPO-adaptive", adaptive, epochs=4),
        # The evidence run adds these.
        "dr_grpo": Method("Dr.GRPO", AlgoConfig(advantage="dr_grpo", aggregation="constant")),
        "rloo": Method("RLOO", AlgoConfig(advantage="rloo")),
        "psr": Method("PSR", AlgoConfig(advantage="psr")),
        "nsr": Method("NSR", AlgoConfig(advantage="nsr")),
        # Clip-higher changes the objective only where the ratio leaves 1, so it gets 4 epochs
        # (with one on-policy update the ratio is exactly 1 and ε_high would do nothing).
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
DEMO_METHODS = ("grpo", "w_reinforce", "asym_grpo", "agpo_asym", "agpo_adaptive")


def check_methods(methods: Sequence[str]) -> None:
    """The --methods check of ``agpo demo`` and ``agpo testbed evidence``: at least one name, and
    every name in METHODS (the error lists the valid ones)."""
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UserError(f"--methods {' '.join(bad)}: valid names are {', '.join(METHODS)}")


def label_of(name: str) -> str:
    """The display label of a method name ("base" for the base model)."""
    return "base" if name == "base" else METHODS[name].label
