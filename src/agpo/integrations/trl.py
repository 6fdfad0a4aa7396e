"""agpo's advantage estimators inside TRL's GRPOTrainer.

TRL has no advantage hook: its ``_generate_and_score_completions`` computes rewards and then
normalises them per group inline. ``AgpoGRPOTrainer`` keeps everything TRL does — generation,
reward functions, their weights, the loss types, accelerate/DeepSpeed/FSDP — and replaces only
the group normalisation: it captures the rewards TRL's reward step computed (gathered over all
processes), runs any ``agpo.algos.ADVANTAGES`` estimator on them grouped [B, G], and hands TRL
the advantages of this process's rows.

    trainer = AgpoGRPOTrainer(
        model=..., reward_funcs=[...], args=GRPOConfig(...), train_dataset=...,
        advantage="agpo_asym", adv_config=AdvantageConfig(asym_neg_const=-1.0),
    )

What changes relative to TRL (docs/trl.md): TRL's ``scale_rewards`` no longer applies (the
estimator defines the scaling); a response the estimator drops (PSR/NSR, ``keep=False``) leaves
the loss and its token count; a completion every reward function scored ``None`` counts as
score 0 in its group's statistics and gets advantage 0 itself (TRL zeroes it too). Clipping is
TRL's (``epsilon`` / ``epsilon_high``: clip-higher works); agpo's per-group adaptive clip and
adaptive temperature are not available through TRL.

Tested with the TRL series in ``TESTED_TRL_SERIES``; other versions fail at construction with a
clear message, because the override depends on private TRL methods that change between releases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import trl
from trl import GRPOTrainer

from agpo.algos.advantages import ADVANTAGES, AdvantageConfig, AdvantageOutput

TESTED_TRL_SERIES: tuple[str, ...] = ("1.16",)
"""major.minor series of TRL this integration is tested with (CI: 1.16.0)."""


def check_trl_version(version: str) -> None:
    """Raise a RuntimeError naming the tested series unless ``version`` belongs to one."""
    series = ".".join(version.split(".")[:2])
    if series not in TESTED_TRL_SERIES:
        raise RuntimeError(
            f"agpo.integrations.trl is tested with TRL {', '.join(TESTED_TRL_SERIES)}.x only; "
            f"found TRL {version}. It overrides private GRPOTrainer methods that change between "
            f"releases: install a tested version (pip install 'trl=={TESTED_TRL_SERIES[-1]}.*')."
        )


def group_advantages(
    scores: torch.Tensor, num_generations: int, name: str, cfg: AdvantageConfig
) -> AdvantageOutput:
    """agpo estimator ``name`` on TRL's flat scores [N] (rows grouped: b·G + g) → outputs [N].

    NaN scores (every reward function returned None) count as 0 for the group's statistics;
    their advantage is 0 and they stay in the loss with it, as in TRL.
    """
    if scores.numel() % num_generations:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {num_generations}")
    unscorable = torch.isnan(scores)
    grouped = torch.nan_to_num(scores.float(), nan=0.0).view(-1, num_generations)  # [B, G]
    out = ADVANTAGES.get(name)(grouped, cfg)
    advantages = out.advantages.flatten().masked_fill(unscorable, 0.0)  # [N]
    keep = out.keep.flatten() | unscorable
    return AdvantageOutput(advantages, keep, out.stats)


@dataclass(frozen=True)
class AgpoStep:
    """What the last generate-and-score step used (all processes, TRL's row order): scores [N],
    advantages [N], keep [N]. For tests and debugging; replaced every step."""

    scores: torch.Tensor
    advantages: torch.Tensor
    keep: torch.Tensor


class AgpoGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer with its group normalisation replaced by an agpo advantage estimator.

    ``advantage``: any name in ``agpo.algos.ADVANTAGES`` (``ADVANTAGES.names()``; an unknown one
    fails with the list); ``adv_config``: its knobs. Every other argument is GRPOTrainer's.
    """

    def __init__(
        self,
        *args: Any,
        advantage: str = "agpo_asym",
        adv_config: AdvantageConfig | None = None,
        **kwargs: Any,
    ) -> None:
        check_trl_version(trl.__version__)
        if advantage not in ADVANTAGES:
            raise ValueError(
                f"unknown advantage estimator {advantage!r}; valid: {', '.join(ADVANTAGES.names())}"
            )
        self.agpo_advantage = advantage
        self.agpo_adv_config = adv_config or AdvantageConfig()
        self.agpo_last: AgpoStep | None = None
        self._agpo_rewards_per_func: torch.Tensor | None = None
        super().__init__(*args, **kwargs)
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                "AgpoGRPOTrainer needs GRPOConfig(multi_objective_aggregation="
                "'sum_then_normalize'): the agpo estimator scores the weighted sum of the reward "
                "functions"
            )

    def _calculate_rewards(  # type: ignore[no-untyped-def]
        self, inputs, prompts, completions, completion_ids_list
    ) -> torch.Tensor:
        """TRL's rewards [N_all, reward functions], kept for the agpo estimator (TRL gathers
        them over every process here, before it normalises them)."""
        rewards_per_func = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        self._agpo_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
        """TRL's step, then its advantages [n] (this process's rows) replaced by agpo's."""
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func, self._agpo_rewards_per_func = self._agpo_rewards_per_func, None
        if rewards_per_func is None:
            raise RuntimeError("TRL's reward step did not run through _calculate_rewards")
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval

        weights = self.reward_weights.to(rewards_per_func.device)
        scores = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)  # [N_all]
        scores[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        out = group_advantages(scores, group, self.agpo_advantage, self.agpo_adv_config)

        local = output["advantages"].shape[0]
        start = self.accelerator.process_index * local
        rows = slice(start, start + local)
        output["advantages"] = out.advantages[rows].to(output["advantages"])
        # keep covers every process's rows, so all ranks agree on entering the gather below.
        if not bool(out.keep.all()):
            self._drop_responses(output, out.keep[rows])
        self._agpo_log(mode, out, scores)
        return output

    def _drop_responses(self, output: dict[str, Any], keep: torch.Tensor) -> None:
        """Take dropped rows out of the loss and of the global token count (TRL's dapo/cispo
        normaliser). Through ``tool_mask``, which only the loss reads, so attention is untouched."""
        keep = keep.to(output["completion_mask"].device).unsqueeze(1)  # [n, 1]
        mask = output.get("tool_mask")
        mask = torch.ones_like(output["completion_mask"]) if mask is None else mask
        output["tool_mask"] = mask * keep.to(mask.dtype)
        loss_mask = output["completion_mask"] * output["tool_mask"]
        output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()

    def _agpo_log(self, mode: str, out: AdvantageOutput, scores: torch.Tensor) -> None:
        self.agpo_last = AgpoStep(scores.detach(), out.advantages.detach(), out.keep.detach())
        # TRL logged its own normalised advantages for the completions table; show agpo's instead.
        logged = self._logs["advantages"]
        for _ in range(min(len(logged), out.advantages.numel())):
            logged.pop()
        logged.extend(out.advantages.tolist())
        for key, value in out.stats.items():
            self._metrics[mode][f"agpo/adv_{key}"].append(float(value))
