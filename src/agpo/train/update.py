"""The policy update of one RL step: epochs × mini-batches × micro-batches.

Each mini-batch is one optimizer step. Its loss is normalised by counts of the WHOLE mini-batch
across micro-batches and processes (``LossNorm``, all-reduced), and gradients are summed across
processes, so the update does not depend on the micro-batch size or the number of processes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LRScheduler

from agpo.algos.advantages import ADVANTAGES, AdvantageConfig, AdvantageOutput
from agpo.algos.aggregation import AGGREGATIONS, LossNorm
from agpo.algos.kl import KL_ESTIMATORS
from agpo.algos.objectives import OBJECTIVES
from agpo.errors import UserError
from agpo.ops import masked_mean
from agpo.rollout.engine import PromptCache, micro_batches, response_logprobs, scoring_net, select, trim_padding
from agpo.train.config import OptimConfig
from agpo.train.dist import all_reduce, all_reduce_grads, world_size
from agpo.train.metrics import MetricSums
from agpo.types import Rollout


@dataclass
class TrainBatch:
    """What the update needs, one row per sequence (this process's rows).

    rollout           prompt/response ids and masks [N, P] / [N, T]
    temperatures      [N]     τ at which π_θ, π_old and π_ref are evaluated
    old_logprobs      [N, T]  π_old of the sampled tokens; None on-policy: the update fills it
                              from its first forward (π_θ before its one optimizer step is π_old)
    ref_logprobs      [N, T]  π_ref (None without a KL term)
    advantages        [N]
    loss_mask         [N, T]  response_mask × keep (PSR/NSR drop rows from loss and denominator)
    clip_low, clip_high [N]   per-row ε (a group's ε repeated over its G rows)
    """

    rollout: Rollout
    temperatures: torch.Tensor
    old_logprobs: torch.Tensor | None
    ref_logprobs: torch.Tensor | None
    advantages: torch.Tensor
    loss_mask: torch.Tensor
    clip_low: torch.Tensor
    clip_high: torch.Tensor


@dataclass(frozen=True)
class UpdateSpec:
    """The loss and batching of the update (read from AlgoConfig / TrainConfig by the loop)."""

    objective: str
    aggregation: str
    kl_estimator: str
    kl_coef: float
    entropy_coef: float
    max_len: int
    epochs: int
    mini_batches: int
    micro_batch_size: int
    group_size: int
    grad_clip: float
    log_entropy: bool = False
    """Measure π_old's token entropy in the first forward (when no separate scoring pass did)."""
    micro_batch_tokens: int = 0
    """With > 0, a micro-batch also holds at most this many padded tokens."""
    share_prompts: bool = True
    """A mini-batch's distinct prompts run once (``PromptCache``); off: every row whole."""


class NonFiniteError(UserError):
    """Too many optimizer steps in a row had a NaN/inf loss or gradient: the run stops."""


@dataclass
class SkipCounter:
    """Optimizer steps skipped in a row for a non-finite loss or gradient (checkpointed)."""

    limit: int
    run: int = 0

    def record(self, skipped: bool) -> None:
        self.run = self.run + 1 if skipped else 0
        if self.run >= self.limit:
            raise NonFiniteError(
                f"the loss or gradient was NaN/inf in {self.run} optimizer steps in a row "
                f"(--train.max-skipped-steps {self.limit}): the run stops with its weights as "
                "before the first of them and its last checkpoint intact; lower --optim.lr or "
                "check the rewards, then --resume with the fixed flags"
            )


def group_advantages(scores: torch.Tensor, usable: torch.Tensor, name: str,
                     cfg: AdvantageConfig) -> AdvantageOutput:
    """The estimator ``name`` on the usable groups only; the other groups (an unusable gold
    answer: a skip, not a reward) get advantage 0 and keep False, so they leave the loss and
    its denominator and no estimator statistic sees them.

    scores [B, G], usable [B] bool → AdvantageOutput with [B, G] tensors; stats over the usable
    groups (empty when none is).
    """
    if bool(usable.all()):
        return ADVANTAGES.get(name)(scores, cfg)
    advantages = torch.zeros_like(scores)
    keep = torch.zeros_like(scores, dtype=torch.bool)
    if not bool(usable.any()):
        return AdvantageOutput(advantages, keep, {})
    part = ADVANTAGES.get(name)(scores[usable], cfg)
    advantages[usable], keep[usable] = part.advantages, part.keep
    return AdvantageOutput(advantages, keep, part.stats)


def lr_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total: int,
                 done: int = 0) -> LRScheduler:
    """--optim.schedule with --optim.warmup-steps over ``total`` optimizer steps: transformers'
    ``get_scheduler`` (warm-up k/warmup · lr at 0-based step k, so the first step has LR 0; then
    constant, or linear / cosine decay to 0 at ``total``). ``done``: steps already taken (a
    resumed run); the schedule is a closed form of the step, so replaying them is exact."""
    from transformers import get_scheduler

    for group in optimizer.param_groups:  # the peak is --optim.lr, also after a resume that changes it
        group["lr"] = group["initial_lr"] = cfg.lr
    name = "constant_with_warmup" if cfg.schedule == "constant" and cfg.warmup_steps else cfg.schedule
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total)
    for _ in range(done):
        _advance(scheduler)
    return scheduler


def _advance(scheduler: LRScheduler) -> None:
    """One step of the schedule. A skipped optimizer step advances it too; torch warns when that
    happens before any optimizer step (and on a resumed run's replay), which is intended here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler", category=UserWarning)
        scheduler.step()


def update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    spec: UpdateSpec,
    scheduler: LRScheduler | None = None,
    generator: torch.Generator | None = None,
    skips: SkipCounter | None = None,
) -> MetricSums:
    """Run the update epochs on ``batch``; return its loss/ (and first-forward rollout/) metrics,
    not yet reduced across processes (the loop reduces them with the step's other metrics).

    Each mini-batch's optimizer step uses the optimizer's LR; ``scheduler`` then advances,
    skipped steps included (None: the LR stays). Mini-batches are whole prompt groups, reshuffled
    each epoch. A mini-batch whose loss or gradient is not finite is skipped (no optimizer step;
    counted in loss/skipped_steps); ``skips`` raises NonFiniteError after too many in a row.
    """
    skips = skips if skips is not None else SkipCounter(limit=1 << 62)
    if batch.old_logprobs is None:
        if spec.epochs != 1 or spec.mini_batches != 1:
            raise ValueError("old_logprobs=None (π_old from the first forward) needs one optimizer step")
        batch.old_logprobs = torch.zeros_like(batch.rollout.logprobs)  # [N, T], filled below
        from_first_forward = True
    else:
        from_first_forward = False
    model.train()
    n_groups = batch.advantages.shape[0] // spec.group_size
    stats = MetricSums(main=world_size() == 1 or dist.get_rank() == 0)
    steps = skipped = 0
    for _ in range(spec.epochs):
        order = (torch.randperm(n_groups, generator=generator) if spec.mini_batches > 1
                 else torch.arange(n_groups))
        for groups in order.tensor_split(spec.mini_batches):  # exactly this many, even if empty
            rows = (groups.unsqueeze(1) * spec.group_size + torch.arange(spec.group_size)).flatten()
            stepped = _mini_batch_step(model, optimizer, batch, rows.sort().values, spec, stats, skips,
                                       first=steps == 0, from_first_forward=from_first_forward)
            steps, skipped = steps + (stepped is True), skipped + (stepped is False)
            if scheduler is not None:
                _advance(scheduler)
    # A loss share's sum runs over micro-batches and processes; its mean is over optimizer steps.
    for key in ("loss/pg", "loss/ref_kl", "loss/entropy_bonus", "loss/total"):
        if key in stats:
            stats.once(key, 0.0, count=max(steps, 1))
    stats.once("loss/skipped_steps", float(skipped))
    return stats


def _mini_batch_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    rows: torch.Tensor,
    spec: UpdateSpec,
    stats: MetricSums,
    skips: SkipCounter,
    first: bool,
    from_first_forward: bool = False,
) -> bool | None:
    """One optimizer step over ``rows`` (indices into the batch), micro-batched; skipped when
    the loss or gradient is not finite. Returns True (a step), False (skipped) or None (nothing
    kept: no step). ``first``: no optimizer step yet, so the forward is π_old's (its entropy is
    measured); ``from_first_forward``: π_old is each micro-batch's own forward,
    written into ``batch.old_logprobs`` as it goes."""
    rows = rows.to(batch.loss_mask.device)
    norm = _global_norm(LossNorm.from_mask(batch.loss_mask[rows], spec.max_len))
    if float(norm.tokens) == 0:  # nothing kept anywhere (e.g. all dropped): no step, no Adam drift
        return None
    optimizer.zero_grad(set_to_none=True)
    prompts = _prompt_cache(model, batch.rollout, rows) if spec.share_prompts else None
    if spec.micro_batch_size < rows.numel() or spec.micro_batch_tokens:
        # Micro-batches of similar response length, so trim_padding can drop the columns past
        # the longest row of each (a short row otherwise pays for the batch's longest). Only the
        # order in which micro-batch gradients are summed changes (float rounding).
        lengths = batch.rollout.response_mask[rows].sum(-1)  # [n]
        rows = rows[torch.sort(lengths, stable=True).indices]
    loss = torch.zeros(())
    for mb in micro_batches(rows, batch.rollout, spec.micro_batch_size, spec.micro_batch_tokens):
        mb_loss = _micro_batch_loss(model, batch, mb, spec, norm, stats, first, from_first_forward,
                                    prompts(mb) if prompts is not None else None)
        mb_loss.backward()
        loss = loss + mb_loss.detach().cpu()
    if prompts is not None:
        prompts.cache.backward()  # the prompts' share of the gradient, once
    all_reduce_grads(model)
    params = [p for p in model.parameters() if p.requires_grad]
    clip = spec.grad_clip if spec.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    # The gradient norm is global (gradients are summed first), this process's loss is not: one
    # MIN-reduce makes every process skip together. One host sync per optimizer step.
    finite = (torch.isfinite(grad_norm.detach().cpu()) & torch.isfinite(loss)).float().reshape(1)
    skipped = bool(all_reduce(finite, dist.ReduceOp.MIN).item() == 0)
    skips.record(skipped)
    if skipped:
        optimizer.zero_grad(set_to_none=True)  # weights and Adam moments stay as they were
        return False
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    stats.once("loss/grad_norm", grad_norm.detach())
    stats.once("loss/lr", torch.tensor(lr))
    return True


def _micro_batch_loss(
    model: torch.nn.Module,
    batch: TrainBatch,
    mb: torch.Tensor,
    spec: UpdateSpec,
    norm: LossNorm,
    stats: MetricSums,
    first: bool,
    from_first_forward: bool = False,
    prompts: object | None = None,
) -> torch.Tensor:
    """Loss of micro-batch rows ``mb``: its share of the mini-batch loss (shares add up).
    ``prompts``: a KV cache of the rows' prompts (``_MiniBatchPrompts(mb)``), or None."""
    # [n, P'] / [n, T']: all-padding columns dropped (the prompt's are the cache's business)
    rows = trim_padding(select(batch.rollout, mb), prompt=prompts is None)
    t = rows.response_ids.shape[1]
    mask = batch.loss_mask[mb][:, :t]  # [n, T']; the dropped columns hold no kept token
    # Chunked over tokens: no [n, T', V] logits tensor is kept (agpo.ops.chunked_logprobs_entropy).
    logprobs, entropy = response_logprobs(
        model, rows, batch.temperatures[mb],
        with_entropy=spec.entropy_coef != 0 or (spec.log_entropy and first),
        share_prompts=spec.share_prompts, prompts=prompts)  # [n, T']
    if entropy is not None and spec.entropy_coef == 0:
        entropy = entropy.detach()  # logged only; differentiable just for the bonus
    if entropy is not None and first:
        # Before the first optimizer step this is π_old's entropy (the rollout/entropy metric).
        stats.mean("rollout/entropy", masked_mean(entropy, rows.response_mask), rows.response_mask.sum())
    if from_first_forward:
        batch.old_logprobs[mb, :t] = logprobs.detach()
    aggregate = AGGREGATIONS.get(spec.aggregation)
    per_token, obj_stats = OBJECTIVES.get(spec.objective)(
        logprobs, batch.old_logprobs[mb][:, :t], batch.advantages[mb], mask,
        batch.clip_low[mb], batch.clip_high[mb],
    )
    # A loss term's share of the mini-batch loss: shares add up over micro-batches and processes
    # (their count, the optimizer steps, is added at the end of the update).
    loss = aggregate(per_token, mask, norm)
    stats.add("loss/pg", loss, 0.0)
    if spec.kl_coef != 0 and batch.ref_logprobs is not None:
        ref_kl = aggregate(KL_ESTIMATORS.get(spec.kl_estimator)(logprobs, batch.ref_logprobs[mb][:, :t]), mask, norm)
        stats.add("loss/ref_kl", ref_kl, 0.0)
        loss = loss + spec.kl_coef * ref_kl
    if spec.entropy_coef != 0:
        bonus = aggregate(entropy, mask, norm)
        stats.add("loss/entropy_bonus", bonus, 0.0)
        loss = loss - spec.entropy_coef * bonus
    stats.add("loss/total", loss, 0.0)
    tokens = mask.sum()
    for key, value in obj_stats.items():
        if key.endswith("_max"):
            stats.peak(f"loss/{key}", value)
        else:
            stats.mean(f"loss/{key}", value, tokens)
    return loss


@dataclass
class _MiniBatchPrompts:
    """The mini-batch's distinct prompts run once (a group's G rows share one), for micro-batches
    of similar length drawn from any group: ``self(mb)`` is the KV cache of rows ``mb``'s prompts."""

    cache: PromptCache
    slot: torch.Tensor  # [N] batch row → its prompt in the cache (-1: not in this mini-batch)

    def __call__(self, mb: torch.Tensor) -> object:
        return self.cache.for_rows(self.slot[mb])


def _prompt_cache(model: torch.nn.Module, rollout: Rollout, rows: torch.Tensor) -> _MiniBatchPrompts | None:
    """The prompts of mini-batch ``rows`` [n] through the model once, with gradient (deferred:
    the micro-batches' backward leaves it on the cache, ``PromptCache.backward`` sends it on);
    None when no prompt repeats or the model cannot serve a cache (``PromptCache.build``)."""
    head = trim_padding(select(rollout, rows))  # the mini-batch's prompts without all-padding columns
    cache = PromptCache.build(scoring_net(model), head.prompt_ids, head.prompt_mask, deferred=True)
    if cache is None:
        return None
    slot = torch.full((rollout.num_sequences,), -1, dtype=torch.long, device=rows.device)
    slot[rows] = cache.inverse
    return _MiniBatchPrompts(cache, slot)


def _global_norm(norm: LossNorm) -> LossNorm:
    """Sum the token and sequence counts over processes (one small all-reduce)."""
    if world_size() == 1:
        return norm
    counts = all_reduce(torch.stack([torch.as_tensor(norm.tokens).float(),
                                     torch.as_tensor(norm.sequences).float()]))
    return LossNorm(tokens=counts[0], sequences=counts[1], max_len=norm.max_len)
