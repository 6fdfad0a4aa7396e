"""The policy update of one RL step: epochs × mini-batches × micro-batches.

Each mini-batch is one optimizer step. Its loss is normalised by counts of the WHOLE mini-batch
across micro-batches and processes (``LossNorm``, all-reduced), and gradients are summed across
processes, so the update does not depend on the micro-batch size or the number of processes.
The rows go through the policy with ``agpo.policy.MiniBatch`` (the prompt cache and the
micro-batches); the loss terms are agpo.algos'.

π_old, one rule: ``TrainBatch.old_logprobs`` None means the update measures it. On-policy (one
optimizer step) π_θ before the step is π_old, so the update's first and only forward of each
row gives π_old's log-probs and token entropy as well; ``update`` returns them.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LRScheduler

from agpo.algos.advantages import ADVANTAGES, AdvantageConfig, AdvantageOutput
from agpo.algos.aggregation import AGGREGATIONS, LossNorm
from agpo.algos.kl import KL_ESTIMATORS
from agpo.algos.objectives import OBJECTIVES
from agpo.errors import UserError
from agpo.models.precision import Precision, autocast
from agpo.policy import MiniBatch
from agpo.train.config import OptimConfig
from agpo.train.dist import all_reduce, all_reduce_grads, world_size
from agpo.train.fsdp import is_sharded
from agpo.train.metrics import MetricSums
from agpo.types import Rollout


@dataclass
class TrainBatch:
    """What the update needs, one row per sequence (this process's rows).

    rollout           prompt/response ids and masks [N, P] / [N, T]
    temperatures      [N]     τ at which π_θ, π_old and π_ref are evaluated
    old_logprobs      [N, T]  π_old of the sampled tokens; None: the update measures it with its
                              first forward (π_θ before its one optimizer step is π_old) and
                              returns it in ``UpdateResult``
    ref_logprobs      [N, T]  π_ref (None without a KL term)
    advantages        [N]
    loss_mask         [N, T]  response_mask × keep (PSR/NSR drop rows from loss and denominator)
    clip_low, clip_high [N]   per-row ε (a group's ε repeated over its G rows)
    is_weights        [N, T]  detached engine/trainer mismatch weights multiplying each token's
                              objective (agpo.algos.mismatch.correct; its dropped sequences are
                              already out of loss_mask); None: no correction
    """

    rollout: Rollout
    temperatures: torch.Tensor
    old_logprobs: torch.Tensor | None
    ref_logprobs: torch.Tensor | None
    advantages: torch.Tensor
    loss_mask: torch.Tensor
    clip_low: torch.Tensor
    clip_high: torch.Tensor
    is_weights: torch.Tensor | None = None


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
    micro_batch_tokens: int = 0
    """With > 0, a micro-batch also holds at most this many padded tokens."""
    share_prompts: bool = True
    """A mini-batch's distinct prompts run once (``PromptCache``); off: every row whole."""
    autocast_bf16: bool = False
    """Run the forward under bfloat16 autocast (bf16-mixed on float32 master weights); the
    backward follows it, the log-probs and the loss stay float32."""
    old_from_engine: bool = False
    """The ratio's π_old is the engine's sampling log-probs (``rollout.logprobs``); a π_old the
    update measures is still the trainer's and is returned (--train.old-logprobs engine)."""


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


@dataclass
class UpdateResult:
    """What the update measured, for the loop."""

    stats: MetricSums
    """loss/ metrics, not yet reduced across processes (the loop reduces them with the step's
    other metrics)."""
    old_logprobs: torch.Tensor | None
    """[N, T] π_old of the sampled tokens: the batch's, or measured by the update's forward; None
    when it was to measure them and no forward ran (no token kept on any process)."""
    entropy: torch.Tensor | None
    """[N, T] π_old's token entropy when the update measured π_old (None otherwise)."""


def update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    spec: UpdateSpec,
    scheduler: LRScheduler | None = None,
    generator: torch.Generator | None = None,
    skips: SkipCounter | None = None,
    progress: Callable[[int, int, int, int], None] | None = None,
) -> UpdateResult:
    """Run the update epochs on ``batch`` (left unchanged) and return what they measured.

    Each mini-batch's optimizer step uses the optimizer's LR; ``scheduler`` then advances,
    skipped steps included (None: the LR stays). Mini-batches are whole prompt groups, reshuffled
    each epoch. A mini-batch whose loss or gradient is not finite is skipped (no optimizer step;
    counted in loss/skipped_steps); ``skips`` raises NonFiniteError after too many in a row.
    ``progress(k, K, m, M)``: told after each micro-batch m of M of optimizer step k of K.
    ``batch.old_logprobs`` None: π_old (and its entropy) come from the forward, which needs one
    optimizer step (one epoch, one mini-batch).
    """
    skips = skips if skips is not None else SkipCounter(limit=1 << 62)
    measured = _Measured.start(batch, spec)
    model.train()
    n_groups = batch.advantages.shape[0] // spec.group_size
    stats = MetricSums(main=world_size() == 1 or dist.get_rank() == 0)
    steps = skipped = 0
    mini_steps = spec.epochs * spec.mini_batches
    for epoch in range(spec.epochs):
        order = (torch.randperm(n_groups, generator=generator) if spec.mini_batches > 1
                 else torch.arange(n_groups))
        for i, groups in enumerate(order.tensor_split(spec.mini_batches)):  # exactly this many, even if empty
            rows = (groups.unsqueeze(1) * spec.group_size + torch.arange(spec.group_size)).flatten()
            k = epoch * spec.mini_batches + i + 1
            stepped = _mini_batch_step(model, optimizer, batch, rows.sort().values, spec, stats, skips,
                                       measured, None if progress is None else partial(progress, k, mini_steps))
            steps, skipped = steps + (stepped is True), skipped + (stepped is False)
            if scheduler is not None:
                _advance(scheduler)
    # A loss share's sum runs over micro-batches and processes; its mean is over optimizer steps.
    for key in ("loss/pg", "loss/ref_kl", "loss/entropy_bonus", "loss/total"):
        if key in stats:
            stats.once(key, 0.0, count=max(steps, 1))
    stats.once("loss/skipped_steps", float(skipped))
    if measured is None:
        return UpdateResult(stats, batch.old_logprobs, None)
    if not measured.filled:
        return UpdateResult(stats, None, None)
    return UpdateResult(stats, measured.old_logprobs, measured.entropy)


@dataclass
class _Measured:
    """π_old's log-probs and token entropy [N, T], written by the forward row by row."""

    old_logprobs: torch.Tensor
    entropy: torch.Tensor
    filled: bool = False  # a forward ran (one mini-batch: then every row's did)

    @classmethod
    def start(cls, batch: TrainBatch, spec: UpdateSpec) -> _Measured | None:
        """Empty buffers when the update measures π_old (``batch.old_logprobs`` None), else None."""
        if batch.old_logprobs is not None:
            return None
        if spec.epochs != 1 or spec.mini_batches != 1:
            raise ValueError("old_logprobs=None (π_old from the first forward) needs one optimizer step")
        zeros = torch.zeros_like(batch.rollout.logprobs)  # [N, T]
        return cls(zeros, zeros.clone())


def _mini_batch_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    rows: torch.Tensor,
    spec: UpdateSpec,
    stats: MetricSums,
    skips: SkipCounter,
    measured: _Measured | None,
    progress: Callable[[int, int], None] | None = None,
) -> bool | None:
    """One optimizer step over ``rows`` (indices into the batch), micro-batched; skipped when
    the loss or gradient is not finite. Returns True (a step), False (skipped) or None (nothing
    kept: no step). ``measured``: π_old's buffers, filled by each micro-batch's forward."""
    rows = rows.to(batch.loss_mask.device)
    norm = _global_norm(LossNorm.from_mask(batch.loss_mask[rows], spec.max_len))
    if float(norm.tokens) == 0:  # nothing kept anywhere (e.g. all dropped): no step, no Adam drift
        return None
    optimizer.zero_grad(set_to_none=True)
    with _autocast(spec, batch.loss_mask.device):  # the shared prompts' forward
        minibatch = MiniBatch(model, batch.rollout, rows, spec.micro_batch_size, spec.micro_batch_tokens,
                              spec.share_prompts)
    loss = torch.zeros(())
    for m, mb in enumerate(minibatch, 1):
        mb_loss = _micro_batch_loss(minibatch, batch, mb, spec, norm, stats, measured)
        mb_loss.backward()
        loss = loss + mb_loss.detach().cpu()
        if progress is not None:
            progress(m, len(minibatch))
    minibatch.backward()  # the prompts' share of the gradient, once
    sharded = is_sharded(model)
    if not sharded:  # FSDP reduces the gradients itself (summed: each loss is its global share)
        all_reduce_grads(model)
    params = [p for p in model.parameters() if p.requires_grad]
    clip = spec.grad_clip if spec.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    if sharded:  # a DTensor over the shards: the global norm
        grad_norm = grad_norm.full_tensor()
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
    minibatch: MiniBatch,
    batch: TrainBatch,
    mb: torch.Tensor,
    spec: UpdateSpec,
    norm: LossNorm,
    stats: MetricSums,
    measured: _Measured | None,
) -> torch.Tensor:
    """Loss of micro-batch rows ``mb``: its share of the mini-batch loss (shares add up)."""
    # Chunked over tokens: no [n, T', V] logits tensor is kept (agpo.ops.chunked_logprobs_entropy).
    with _autocast(spec, batch.loss_mask.device):
        rows, logprobs, entropy = minibatch.forward(mb, batch.temperatures[mb],
                                                    with_entropy=spec.entropy_coef != 0 or measured is not None)
    t = rows.response_ids.shape[1]  # [n, T']: the dropped columns hold no kept token
    mask = batch.loss_mask[mb][:, :t]  # [n, T']
    if entropy is not None and spec.entropy_coef == 0:
        entropy = entropy.detach()  # measured only; differentiable just for the bonus
    if measured is not None:
        measured.old_logprobs[mb, :t] = logprobs.detach()
        measured.entropy[mb, :t] = entropy.detach()
        measured.filled = True
        old_logprobs = measured.old_logprobs
    else:
        old_logprobs = batch.old_logprobs
    if spec.old_from_engine:
        old_logprobs = batch.rollout.logprobs
    aggregate = AGGREGATIONS.get(spec.aggregation)
    per_token, obj_stats = OBJECTIVES.get(spec.objective)(
        logprobs, old_logprobs[mb][:, :t], batch.advantages[mb], mask,
        batch.clip_low[mb], batch.clip_high[mb],
    )
    if batch.is_weights is not None:  # truncated IS: the samples came from the engine's π
        per_token = per_token * batch.is_weights[mb][:, :t]
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


_NEGATED_MIN = "mismatch/seq_ratio_min"


def add_mismatch_metrics(stats: MetricSums, mismatch: dict[str, torch.Tensor]) -> None:
    """The mismatch/ stats of ``agpo.algos.mismatch.correct`` (this process's rows) into
    ``stats``, so that the step's reduction gives them over every process: means weighted by
    their token or sequence counts, the maximum as a peak, the minimum as the peak of its
    negation (``finish_mismatch_metrics`` turns it back)."""
    tokens, sequences = mismatch["mismatch/tokens"], mismatch["mismatch/sequences"]
    for key in ("mismatch/token_gap_mean", "mismatch/token_truncated_frac"):
        stats.mean(key, mismatch[key], tokens)
    for key in ("mismatch/seq_ratio_mean", "mismatch/seq_masked_frac"):
        stats.mean(key, mismatch[key], sequences)
    # A process without response tokens has nothing to report: -inf leaves its peaks out.
    none = torch.tensor(-math.inf)
    for key in ("mismatch/token_gap_max", "mismatch/seq_ratio_max"):
        stats.peak(key, mismatch[key] if float(tokens) > 0 else none)
    stats.peak(_NEGATED_MIN, -mismatch[_NEGATED_MIN] if float(tokens) > 0 else none)


def finish_mismatch_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` after the reduction with the sequence ratio's minimum turned back from the
    maximum of its negation (``add_mismatch_metrics``)."""
    if _NEGATED_MIN in metrics:
        metrics[_NEGATED_MIN] = -metrics[_NEGATED_MIN]
    return metrics


def _autocast(spec: UpdateSpec, device: torch.device) -> contextlib.AbstractContextManager[None]:
    return autocast(Precision("bf16-mixed" if spec.autocast_bf16 else "fp32"), device)


def _global_norm(norm: LossNorm) -> LossNorm:
    """Sum the token and sequence counts over processes (one small all-reduce)."""
    if world_size() == 1:
        return norm
    counts = all_reduce(torch.stack([torch.as_tensor(norm.tokens).float(),
                                     torch.as_tensor(norm.sequences).float()]))
    return LossNorm(tokens=counts[0], sequences=counts[1], max_len=norm.max_len)
