"""The training loop: one RL step in the order of DESIGN.md, then logging and checkpoints.

    sample B prompts × G (probe group first for AGPO-adaptive) → verify → shape + advantages →
    old / reference log-probs → clip ε → update (epochs × mini-batches × micro-batches) →
    post-update diagnostics → controllers commit once → metrics → checkpoint → periodic eval
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agpo.algos.dapo import overlong_penalty
from agpo.rewards.api import is_skip
from agpo.train.config import RunConfig
from agpo.train.dist import all_reduce_sum
from agpo.train.metrics import (
    Timer, advantage_metrics, after_update, count_metrics, group_metrics, progress_text,
    rollout_metrics, write_samples,
)
from agpo.train.state import Run
from agpo.train.update import TrainBatch, group_advantages, update


def train(cfg: RunConfig | None, out_dir: str | Path, resume: bool = False, *,
          flags: frozenset[str] = frozenset()) -> Path:
    """Train into ``out_dir`` (a new run, or with ``resume`` its last checkpoint onwards).

    ``cfg`` may be None on resume (the run's config.yaml is used); ``flags`` names the fields
    the command line set (``agpo.train.config.flag_fields``). Returns the run directory.
    """
    run = Run.start(cfg, Path(out_dir), resume, flags)
    try:
        with _progress(run) as bar:
            task = bar.add_task("train", total=run.cfg.train.steps, completed=run.step, info="")
            while not run.finished():
                metrics = rl_step(run)
                run.step += 1
                metrics.update(periodic_eval(run))
                run.write_metrics(metrics)
                every = run.cfg.train.checkpoint_every
                if (every and run.step % every == 0) or run.finished():
                    run.save()
                bar.update(task, completed=run.step, info=progress_text(metrics))
    finally:
        run.close()
    return run.dir


def rl_step(run: Run) -> dict[str, float]:
    """One RL step (sample → update); returns its metrics, reduced over processes."""
    cfg, g, timer, world = run.cfg, run.cfg.train.group_size, Timer(), run.dist.world
    # 1. Sample B prompts × G and verify (probe group and dynamic sampling inside).
    groups = run.sampler.collect(timer)
    rollout, raw = groups.rollout, groups.scores  # [N, T], [B, G]
    device = rollout.response_ids.device
    lengths = rollout.response_mask.sum(-1).cpu()  # [N]; scores and advantages live on the CPU
    # 2. DAPO overlong shaping, then the group advantages (groups with an unusable gold: none).
    scores = raw + overlong_penalty(lengths, cfg.rollout.max_new_tokens, cfg.algo.overlong_cache).view_as(raw)
    usable = ~torch.tensor([is_skip(r) for r in groups.results], dtype=torch.bool).view_as(raw).any(-1)  # [B]
    adv = group_advantages(scores, usable, cfg.algo.advantage, cfg.algo.adv)  # [B, G]
    advantages, keep = adv.advantages.flatten().to(device), adv.keep.flatten().to(device)  # [N]
    loss_mask = rollout.response_mask * keep.unsqueeze(-1).to(rollout.response_mask.dtype)  # [N, T]
    # 3. π_old and π_ref of the sampled tokens, on logits / τ (τ = each row's sampling temperature).
    temps = rollout.temperatures if cfg.algo.adaptive.logprob_temperature == "sampling" else torch.ones_like(rollout.temperatures)
    with timer("score"):  # on-policy the update's first forward gives π_old (None here)
        old_logprobs, entropy = (None, None) if cfg.old_logprobs_in_update else run.logprobs(rollout, temps)
        ref_logprobs = run.ref_logprobs(rollout, temps)
    # 4. Clip range per row: fixed ε_low / ε_high, or AGPO-adaptive's ε per group (state of step start).
    clip_low, clip_high = run.clip.epsilons(entropy, rollout.response_mask, groups.probe)  # [N] each
    # 5. The update (a mini-batch with a non-finite loss or gradient is skipped, and counted).
    batch = TrainBatch(rollout, temps, old_logprobs, ref_logprobs, advantages, loss_mask, clip_low, clip_high)
    with timer("update"):
        update_stats = update(run.policy, run.optimizer, batch, run.update_spec(), run.scheduler,
                              run.generator if run.generator.device.type == "cpu" else None, run.skips)
    old_logprobs = batch.old_logprobs  # [N, T], filled by the update when it measured them
    # 6. After the update: policy drift (KL̄_step's input) and AsymGRPO's positive log-prob increment.
    trainer_lp = None if run.sampler.engine.exact_logprobs else old_logprobs  # for the engine gap
    means = {**rollout_metrics(rollout, entropy, trainer_lp), **group_metrics(scores, raw, usable, world)}
    drift = None
    if run.clip.needs_drift or cfg.log.post_update_stats:
        with timer("score"):
            new_logprobs, _ = run.logprobs(rollout, temps)
        drift, diagnostics = after_update(old_logprobs, new_logprobs, rollout.response_mask, advantages, g)
        drift = all_reduce_sum(drift.reshape(1).cpu(), run.dist) / world  # the same on every process
        means.update(diagnostics)
    # 7. Controllers commit once per RL step, in global prompt order.
    run.temperature.commit(groups.probe, run.gather)
    run.clip.commit(drift, run.gather)
    # 8. Metrics (the update's and the step's: one reduction across processes), samples, tokens.
    adv_means, adv_peaks = advantage_metrics(adv.stats, adv.keep[usable], world)
    update_stats.add_pairs({**means, **adv_means, **count_metrics(groups, clip_low, world)})
    update_stats.add_peaks(adv_peaks)
    metrics = update_stats.reduce()
    tokens = int(all_reduce_sum(torch.tensor([float(groups.tokens)]), run.dist).item())
    run.tokens_total += tokens
    metrics.update(run.controller_metrics())
    metrics.update({"perf/tokens_step": tokens, "perf/tokens_total": run.tokens_total, **timer.metrics()})
    if run.dist.main and cfg.log.samples_per_step:
        write_samples(run.dir / "samples" / f"step_{run.step + 1}.jsonl", groups.items, rollout,
                      groups.results, advantages, cfg.log.samples_per_step)
    return metrics


def periodic_eval(run: Run) -> dict[str, float]:
    """pass@k on the held-out split every --eval.every steps (rank 0 samples; others wait)."""
    cfg = run.cfg
    if not cfg.eval.every or run.step % cfg.eval.every or run.eval_items is None:
        return {}
    from dataclasses import replace

    from agpo.eval.runner import evaluate_items

    result: dict[str, float] = {}
    if run.dist.main:
        sampling = replace(cfg.rollout, temperature=cfg.eval.temperature, top_p=cfg.eval.top_p)
        result = evaluate_items(run.policy, run.tokenizer, run.eval_items, cfg.eval.n, sampling,
                                run.reward, None, template=cfg.task.template, seed=cfg.train.seed,
                                progress=False, engine=run.sampler.engine)
        run.write_eval(result)
    run.barrier()
    return {f"eval/{k}": float(v) for k, v in result.items() if isinstance(v, int | float)}


def _progress(run: Run) -> Progress:
    return Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not (run.cfg.log.progress and run.dist.main),
    )
