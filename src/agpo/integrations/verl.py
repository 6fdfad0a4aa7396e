"""agpo's advantage estimators and PPO-clip objective, registered into verl.

verl (Ray single-controller, FSDP/Megatron, vLLM/SGLang) looks advantage estimators and policy
losses up by name in two registries (``verl.trainer.ppo.core_algos``). Importing this module with
verl installed registers, once:

- every entry of ``agpo.algos.ADVANTAGES`` under its agpo name
  (``algorithm.adv_estimator=agpo_asym``) — except where verl already owns the name
  (``grpo``, ``rloo``, ``grpo_passk``): those become ``agpo_grpo``, ``agpo_rloo``,
  ``agpo_grpo_passk`` (``VERL_NAMES`` is the fixed table);
- agpo's PPO-clip objective as the policy loss ``agpo_ppo_clip``
  (``actor_rollout_ref.actor.policy_loss.loss_mode=agpo_ppo_clip``), aggregated by verl's own
  ``agg_loss`` with verl's global batch counts, so the loss does not depend on the number of
  data-parallel ranks or micro-batches.

verl loads it into its driver and Ray workers through its external-module hook::

    export VERL_USE_EXTERNAL_MODULES=agpo.integrations.verl

Estimator knobs (``agpo.algos.AdvantageConfig`` fields) reach the functions through an ``agpo``
section of verl's ``algorithm`` config, e.g. ``+algorithm.agpo.asym_neg_const=-0.5``; unknown
keys fail with the list of valid ones. The clip range is verl's own
(``actor.clip_ratio_low`` / ``clip_ratio_high``: clip-higher works as in verl).

verl is optional: importing this module without verl defines the pure adapters below (tested in
agpo's main environment) and registers nothing. See docs/verl.md for what does not carry over
(adaptive temperature, per-group adaptive clip, probe groups).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch

from agpo.algos.advantages import ADVANTAGES, AdvantageConfig
from agpo.algos.objectives import OBJECTIVES

# verl registers its own "grpo", "rloo" and "grpo_passk" (and special-cases "grpo" in its
# trainer), so agpo's versions take a prefix there. A fixed table, not a runtime check, so a
# config means the same estimator with every verl version.
_VERL_OWNED = frozenset({"grpo", "rloo", "grpo_passk"})
VERL_NAMES: dict[str, str] = {
    name: f"agpo_{name}" if name in _VERL_OWNED else name for name in ADVANTAGES.names()
}
POLICY_LOSS_NAME = "agpo_ppo_clip"
CONFIG_SECTION = "agpo"
"""Key of the section of verl's ``algorithm`` config that holds AdvantageConfig fields."""


def advantage_config(algorithm_config: Mapping[str, Any] | None) -> AdvantageConfig:
    """AdvantageConfig from the ``agpo`` section of verl's ``algorithm`` config (DictConfig,
    AlgoConfig or a plain mapping); defaults where the section or a key is absent.

    >>> advantage_config({"agpo": {"asym_neg_const": -0.5}}).asym_neg_const
    -0.5
    """
    section = None if algorithm_config is None else algorithm_config.get(CONFIG_SECTION)
    if not section:
        return AdvantageConfig()
    values = {str(k): v for k, v in dict(section).items()}
    valid = {f.name for f in dataclasses.fields(AdvantageConfig)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ValueError(
            f"algorithm.{CONFIG_SECTION}: unknown key(s) {', '.join(unknown)}; valid keys: "
            f"{', '.join(sorted(valid))} (fields of agpo.algos.AdvantageConfig)"
        )
    return AdvantageConfig(**values)


def group_rows(index: Sequence[Hashable]) -> list[torch.Tensor]:
    """Row numbers of each prompt group, bucketed by group size: a list of [B_s, G_s] tensors.

    ``index`` is verl's per-row group id (``uid``, N entries). verl may reorder rows (e.g.
    ``trainer.balance_batch``), so groups are found by id, not by position; groups keep the order
    their rows appear in. Groups of different sizes (after filtering) form separate buckets so
    each estimator still sees a rectangular [B, G] tensor.
    """
    groups: dict[Hashable, list[int]] = {}
    for row, uid in enumerate(index):
        groups.setdefault(uid, []).append(row)
    by_size: dict[int, list[list[int]]] = {}
    for rows in groups.values():
        by_size.setdefault(len(rows), []).append(rows)
    return [torch.tensor(rows, dtype=torch.long) for _, rows in sorted(by_size.items())]


def outcome_advantages(
    name: str,
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Sequence[Hashable] | None,
    cfg: AdvantageConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """agpo estimator ``name`` in verl's terms: token-level rewards [N, T] → advantages [N, T].

    The outcome score of a response is the sum of its token-level rewards (as verl's GRPO does);
    the estimator sees the scores grouped [B, G] by ``index``; each row's advantage is broadcast
    over its response tokens. verl's estimators return (advantages, returns); for outcome
    estimators both are the same tensor. A response agpo drops (``keep=False``: PSR/NSR) gets
    advantage 0 but its tokens stay in verl's token count — verl's estimator interface cannot
    change the loss mask (docs/verl.md).
    """
    if index is None:
        raise ValueError(
            f"agpo estimator {name!r} needs verl's group index (non_tensor_batch['uid']); "
            "it is set when actor_rollout_ref.rollout.n > 1"
        )
    fn = ADVANTAGES.get(name)
    scores = token_level_rewards.sum(dim=-1).float()  # [N]
    per_row = torch.zeros_like(scores)  # [N]
    for rows in group_rows(index):  # rows: [B_s, G_s]
        rows = rows.to(scores.device)
        per_row[rows] = fn(scores[rows], cfg).advantages
    advantages = per_row.unsqueeze(-1) * response_mask.to(per_row.dtype)  # [N, T]
    return advantages, advantages


def make_estimator(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """A function with verl's advantage-estimator signature that runs agpo's ``name``."""

    def estimator(
        token_level_rewards: torch.Tensor,
        response_mask: torch.Tensor,
        index: Sequence[Hashable] | None = None,
        config: Mapping[str, Any] | None = None,
        **_unused: Any,  # verl passes optional extras (reward_baselines, ...) by keyword
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return outcome_advantages(
                name, token_level_rewards, response_mask, index, advantage_config(config)
            )

    estimator.__name__ = f"agpo_{name}_advantage"
    estimator.__doc__ = f"agpo's {name!r} estimator (agpo.algos.ADVANTAGES) in verl's interface."
    return estimator


def clip_range(actor_config: Any) -> tuple[float, float]:
    """(ε_low, ε_high) from verl's actor config: clip_ratio_low/high, else clip_ratio."""
    base = actor_config.clip_ratio
    low = actor_config.clip_ratio_low
    high = actor_config.clip_ratio_high
    return (base if low is None else low), (base if high is None else high)


def policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """agpo's ``ppo_clip`` objective in verl's policy-loss interface (all tensors [N, T]).

    Per-token loss from agpo (``agpo.algos.objectives.ppo_clip``, token-level advantages
    broadcast as they are), optionally weighted by verl's rollout-correction weights, then
    verl's ``agg_loss`` with ``config.global_batch_info`` (global token / sequence counts and the
    data-parallel size) so summing micro-batches and ranks gives the mini-batch loss. Unlike
    verl's ``vanilla`` there is no dual-clip bound (clip_ratio_c) on negative advantages.
    Metrics follow verl's convention (Python floats, one host sync per micro-batch).
    """
    from verl.trainer.ppo.core_algos import agg_loss

    if config is None:
        raise ValueError(f"{POLICY_LOSS_NAME} needs verl's actor config (clip_ratio_*)")
    clip_low, clip_high = clip_range(config)
    per_token, stats = OBJECTIVES.get("ppo_clip")(
        log_prob, old_log_prob, advantages, response_mask, clip_low, clip_high
    )
    if rollout_is_weights is not None:
        per_token = per_token * rollout_is_weights
    batch_info = getattr(config, "global_batch_info", None) or {}
    loss = agg_loss(
        loss_mat=per_token, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **batch_info
    )
    metrics = {
        "actor/pg_clipfrac": (stats["clipfrac_low"] + stats["clipfrac_high"]).item(),
        "actor/pg_clipfrac_lower": stats["clipfrac_low"].item(),
        "actor/agpo_approx_kl_k3": stats["approx_kl"].item(),
        "actor/agpo_ratio_max": stats["ratio_max"].item(),
    }
    return loss, metrics


_registered = False


def register() -> None:
    """Register every agpo estimator and the policy loss in verl's registries (idempotent).

    Raises ImportError with the install hint when verl is missing, and ValueError (verl's) if a
    name in ``VERL_NAMES`` is already taken by a different verl estimator.
    """
    global _registered
    if _registered:
        return
    try:
        from verl.trainer.ppo import core_algos
    except ImportError as e:
        raise ImportError(
            "agpo.integrations.verl needs verl in this environment; build one with "
            "scripts/verl_env.sh (verl pins transformers<5.11, so it lives in .venv-verl)"
        ) from e
    for name, verl_name in VERL_NAMES.items():
        core_algos.register_adv_est(verl_name)(make_estimator(name))
    core_algos.register_policy_loss(POLICY_LOSS_NAME)(policy_loss)
    _registered = True


# Imported through VERL_USE_EXTERNAL_MODULES (or by hand) inside verl's environment: register.
# Without verl the pure adapters above stay importable and nothing is registered.
if importlib.util.find_spec("verl") is not None:
    register()
