"""The training loop: one RL step in the order of docs/design.md, then logging and checkpoints.

    sample B prompts × G (probe group first for AGPO-adaptive) → verify → shape + advantages →
    old / reference log-probs → clip ε → update (epochs × mini-batches × micro-batches) →
    post-update diagnostics → controllers commit once → metrics → checkpoint → periodic eval
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agpo.algos.dapo import overlong_penalty
from agpo.errors import UserError
from agpo.rewards.api import is_skip
from agpo.rollout.sampler import sampling_progress
from agpo.train.config import RunConfig
from agpo.train.limits import cannot_continue, require_a_step, stop_reason
from agpo.train.dist import all_reduce_sum
from agpo.train.metrics import (
    StepProgress, Timer, advantage_metrics, after_update, audit_metrics, count_metrics,
    group_metrics, rollout_metrics, write_samples,
)
from agpo.train.sampling import Groups
from agpo.train.state import Run
from agpo.train.update import (
    TrainBatch, add_mismatch_metrics, finish_mismatch_metrics, group_advantages, update,
)


def train(cfg: RunConfig | None, out_dir: str | Path, resume: bool = False, *,
          flags: frozenset[str] = frozenset(), say: Callable[[str], None] | None = None) -> Path:
    """Train into ``out_dir`` (a new run, or with ``resume`` its last checkpoint onwards).

    ``cfg`` may be None on resume (the run's config.yaml is used); ``flags`` names the fields
    the command line set (``agpo.train.config.flag_fields``). ``say`` (main process only)
    receives the line naming the limit that ended the run. A resumed run that no limit lets
    take a step is a UserError naming the limit and its flag. Returns the run directory.
    """
    if resume and cfg is not None:
        require_a_step(Path(out_dir), cfg.train)  # before Run.start rewrites config.yaml
    run = Run.start(cfg, Path(out_dir), resume, flags)
    try:
        if resume and (reason := _stopped(run)):  # resumed from an older checkpoint than the newest
            raise UserError(cannot_continue(run.dir, run.cfg.train, run.step, run.tokens_total, reason))
        with _progress(run) as bar:
            task = bar.add_task("train", total=run.cfg.train.steps, completed=run.step, info="")
            progress = None if bar.disable else StepProgress(lambda text: bar.update(task, info=text))
            while _stopped(run) is None:
                metrics = rl_step(run, progress)
                run.step += 1
                metrics.update(periodic_eval(run, progress))
                run.write_metrics(metrics)
                every = run.cfg.train.checkpoint_every
                if (every and run.step % every == 0) or _stopped(run):
                    if progress is not None:
                        progress.phase("checkpoint")
                    run.save()
                bar.update(task, completed=run.step)
                if progress is not None:
                    progress.end(metrics)
        if say is not None and run.dist.main:
            say(f"stopped at step {run.step}: {_stopped(run)}")
    finally:
        run.close()
    return run.dir


def _stopped(run: Run) -> str | None:
    return stop_reason(run.cfg.train, run.step, run.tokens_total)


def rl_step(run: Run, progress: StepProgress | None = None) -> dict[str, float]:
    """One RL step (sample → learn); returns its metrics, reduced over processes.
    ``progress``: shown each phase as it begins, and how far sampling got."""
    timer = Timer(progress.phase if progress is not None else None)
    if progress is not None:
        progress.begin(run.step + 1)
    with run.checkpoint_on_stop():  # sampling leaves the weights at step N: a stop keeps them
        groups = sample(run, timer, progress)
    return learn(run, groups, timer, progress)


def sample(run: Run, timer: Timer, progress: StepProgress | None = None) -> Groups:
    """Step 1 of an RL step: sample B prompts × G and verify them (the probe group and dynamic
    sampling inside). Leaves the weights alone. ``progress``: how far sampling got."""
    shown = sampling_progress(progress.sampling) if progress is not None else nullcontext()
    with run.inference(), shown:  # bf16 autocast / FSDP's gathered weights, as every no-grad forward
        return run.sampler.collect(timer)


def learn(run: Run, groups: Groups, timer: Timer, progress: StepProgress | None = None) -> dict[str, float]:
    """Steps 2–8 of an RL step on the sampled ``groups``: advantages, the update, the controllers;
    returns the step's metrics, reduced over processes."""
    cfg, g, world = run.cfg, run.cfg.train.group_size, run.dist.world
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
    with timer("score"):  # on-policy the update's first forward gives π_old and its entropy (None here)
        old_logprobs, entropy = run.old_logprobs(rollout, temps)
        ref_logprobs = run.ref_logprobs(rollout, temps)
    # Engine/trainer mismatch correction: weights on each token, dropped rows out of the loss.
    correction = run.mismatch(old_logprobs, rollout) if cfg.algo.mismatch_correction else None
    if correction is not None:
        loss_mask = loss_mask * correction.keep.unsqueeze(-1).to(loss_mask.dtype)
    # 4. Clip range per row: fixed ε_low / ε_high, or AGPO-adaptive's ε per group (state of step start).
    clip = run.control.clip.epsilons(entropy, rollout.response_mask, groups.probe)  # [N] each
    # 5. The update (a mini-batch with a non-finite loss or gradient is skipped, and counted).
    batch = TrainBatch(rollout, temps, old_logprobs, ref_logprobs, advantages, loss_mask, clip.low, clip.high,
                       None if correction is None else correction.weights)
    with timer("update"):
        result = update(run.policy, run.optimizer, batch, run.update_spec(), run.scheduler,
                        run.generator if run.generator.device.type == "cpu" else None, run.skips,
                        None if progress is None else progress.micro_batch)
    # [N, T]: the scoring pass's, or the update's forward's (None: no token was kept anywhere, so
    # no forward ran and nothing changed)
    old_logprobs = result.old_logprobs
    if result.entropy is not None:  # π_old's token entropy [N, T], measured with it by the update
        entropy = result.entropy
    # 6. After the update: policy drift (KL̄_step's input) and AsymGRPO's positive log-prob increment.
    means = {**rollout_metrics(rollout, entropy), **group_metrics(scores, raw, usable, world),
             **audit_metrics(groups.items, rollout.texts, groups.results, g)}
    drift = None
    if old_logprobs is not None and (run.control.clip.needs_drift or cfg.log.post_update_stats):
        with timer("score"):
            new_logprobs, _ = run.logprobs(rollout, temps)
        drift, diagnostics = after_update(old_logprobs, new_logprobs, rollout.response_mask, advantages, g)
        drift = all_reduce_sum(drift.reshape(1).cpu(), run.dist) / world  # the same on every process
        means.update(diagnostics)
    # 7. Controllers commit once per RL step, in global prompt order.
    run.control.commit(groups.probe, clip, drift, run.gather)
    # 8. Metrics (the update's and the step's: one reduction across processes), samples, tokens.
    adv_means, adv_peaks = advantage_metrics(adv.stats, adv.keep[usable], world)
    stats = result.stats
    if old_logprobs is not None and run.trainer_old_logprobs and run.logs_mismatch:  # the engine gap
        add_mismatch_metrics(stats, (correction or run.mismatch(old_logprobs, rollout)).stats)
    stats.add_pairs({**means, **adv_means, **count_metrics(groups, clip.low, world)})
    stats.add_peaks(adv_peaks)
    metrics = finish_mismatch_metrics(stats.reduce())
    tokens = int(all_reduce_sum(torch.tensor([float(groups.tokens)]), run.dist).item())
    run.tokens_total += tokens
    metrics.update(run.control.metrics())
    metrics.update({"perf/tokens_step": tokens, "perf/tokens_total": run.tokens_total, **timer.metrics(),
                    **run.precision_metrics()})
    if run.dist.main and cfg.log.samples_per_step:
        write_samples(run.dir / "samples" / f"step_{run.step + 1}.jsonl", groups.items, rollout,
                      groups.results, advantages, cfg.log.samples_per_step)
    return metrics


def periodic_eval(run: Run, progress: StepProgress | None = None) -> dict[str, float]:
    """pass@k on the held-out split every --eval.every steps (rank 0 samples; others wait)."""
    cfg = run.cfg
    if not cfg.eval.every or run.step % cfg.eval.every or run.eval_items is None:
        return {}
    if progress is not None:
        progress.phase("eval")
    from dataclasses import replace

    from agpo.eval.runner import evaluate_items

    result: dict[str, float] = {}
    with run.inference():  # every process enters (FSDP gathers the weights); one samples
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
