"""The sampling phase of one RL step: probe group (AGPO-adaptive), training groups at the
temperature strategy's τ, verification, and DAPO's dynamic sampling (over-generate until the
batch holds B informative groups, at most --algo.max-sampling-rounds rounds).

Samples come from the rollout engine (--rollout.engine), with the engine's log-probs of the
sampled tokens. By default π_old is the trainer's own computation (RunConfig.old_logprobs_in_update)
and the engine's log-probs only measure the engine/trainer gap (mismatch/token_gap_mean, ≈ 1e-5
in fp32 on CPU); --algo.mismatch-correction weights the loss by the truncated ratio
π_trainer / π_engine, as TRL does, and --train.old-logprobs engine takes π_old from the engine
(agpo.algos.mismatch, docs/engines.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch

from agpo.algos.controllers import ProbeStats, expand_groups, probe_statistics
from agpo.algos.dapo import informative_groups
from agpo.rollout import Engine, build_engine
from agpo.tasks import render_prompt
from agpo.train.config import RunConfig
from agpo.train.control import AdaptiveTemperature, FixedTemperature
from agpo.train.metrics import Timer
from agpo.types import RewardResult, Rollout, TaskItem


@dataclass
class Groups:
    """b prompt groups of G responses, verified. Rows grouped: row i·G + g."""

    items: list[TaskItem]
    rollout: Rollout  # [b·G, T]
    results: list[RewardResult]  # b·G
    scores: torch.Tensor  # [b, G] the verifier's scores
    probe: ProbeStats | None  # [b] each; None without a probe
    tokens: int  # every generated token of this sampling, probe and discarded groups included
    probe_tokens: int
    rounds: int = 1
    discarded: int = 0  # groups sampled but dropped by dynamic sampling

    @property
    def size(self) -> int:
        return len(self.items)


@dataclass
class Sampler:
    """Everything the sampling phase needs; ``next_items(b)`` advances the data cursor."""

    cfg: RunConfig
    policy: torch.nn.Module
    tokenizer: object
    reward: object  # agpo.rewards.RewardFn
    generator: torch.Generator
    temperature: FixedTemperature | AdaptiveTemperature
    needs_probe: bool  # a strategy (temperature or clip) reads the probe's statistics
    next_items: Callable[[], list[TaskItem]]
    any_process: Callable[[bool], bool]  # True when the flag is True on some process
    engine: Engine | None = None  # default: built from --rollout.engine on the policy

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = build_engine(self.cfg.rollout.engine, self.policy, self.tokenizer,
                                       self.cfg.rollout)

    def collect(self, timer: Timer) -> Groups:
        """Sample this process's prompts; with dynamic sampling keep only informative groups,
        over-generating for the missing ones (every process runs the same number of rounds)."""
        groups = self.round(self.next_items(), timer)
        if not self.cfg.algo.dynamic_sampling:
            return groups
        want = groups.size
        kept = self._informative(groups)
        rounds, tokens, probe_tokens = 1, groups.tokens, groups.probe_tokens
        while self.any_process(kept.size < want) and rounds < self.cfg.algo.max_sampling_rounds:
            more = self.round(self.next_items(), timer)
            kept = _cat([kept, self._informative(more)], self.tokenizer.pad_token_id)
            rounds, tokens, probe_tokens = rounds + 1, tokens + more.tokens, probe_tokens + more.probe_tokens
        kept = _take(kept, min(kept.size, want))
        return replace(kept, tokens=tokens, probe_tokens=probe_tokens, rounds=rounds,
                       discarded=rounds * want - kept.size)

    def round(self, items: list[TaskItem], timer: Timer) -> Groups:
        """One sampling round: optional probe at τ_base, then G responses per prompt at τ."""
        cfg, g = self.cfg, self.cfg.train.group_size
        prompts = [render_prompt(it, cfg.task.template, self.tokenizer) for it in items]
        probe, probe_tokens = None, 0
        if self.needs_probe:
            gp = cfg.algo.adaptive.probe_group_size or g
            # The probe only feeds the controllers' statistics: its engine log-probs are unused.
            probe_rollout, probe_results = self._sample_verify(
                items, prompts, gp, torch.full((len(items),), cfg.algo.adaptive.tau_base), timer)
            probe_scores = _scores(probe_results, len(items), gp)
            answers = [[r.parsed for r in probe_results[i * gp : (i + 1) * gp]] for i in range(len(items))]
            probe = probe_statistics(probe_scores, answers, cfg.algo.adaptive)
            probe_tokens = probe_rollout.num_generated_tokens
        taus = self.temperature.temperatures(probe, len(items))  # [b], controller state of step start
        rollout, results = self._sample_verify(items, prompts, g, taus, timer)
        return Groups(items, rollout, results, _scores(results, len(items), g), probe,
                      rollout.num_generated_tokens + probe_tokens, probe_tokens)

    def _sample_verify(
        self, items: list[TaskItem], prompts: list[str], g: int, taus: torch.Tensor, timer: Timer
    ) -> tuple[Rollout, list[RewardResult]]:
        rep_prompts = [p for p in prompts for _ in range(g)]
        with timer("sampling"):
            rollout = self.engine.sample(rep_prompts, expand_groups(taus, g), self.cfg.rollout,
                                         self.generator)
        with timer("verify"):
            results = self.reward.batch([it for it in items for _ in range(g)], rollout.texts)
        return rollout, results

    def _informative(self, groups: Groups) -> Groups:
        keep = informative_groups(groups.scores).nonzero().flatten().tolist()
        return _take(groups, keep)


def _scores(results: list[RewardResult], b: int, g: int) -> torch.Tensor:
    return torch.tensor([r.score for r in results], dtype=torch.float32).view(b, g)  # [b, G]


def _take(groups: Groups, which: int | list[int]) -> Groups:
    """The first ``which`` groups, or the groups with the listed indices."""
    idx = list(range(which)) if isinstance(which, int) else which
    g = groups.scores.shape[1]
    rows = [i * g + j for i in idx for j in range(g)]
    probe = None
    if groups.probe is not None:
        probe = ProbeStats(*(getattr(groups.probe, f.name)[idx] for f in fields(ProbeStats)))
    return replace(groups, items=[groups.items[i] for i in idx], rollout=groups.rollout.select(rows),
                   results=[groups.results[r] for r in rows], scores=groups.scores[idx], probe=probe)


def _cat(parts: list[Groups], pad: int) -> Groups:
    probe = None
    if parts[0].probe is not None:
        probe = ProbeStats(*(torch.cat([getattr(p.probe, f.name) for p in parts]) for f in fields(ProbeStats)))
    return Groups(
        items=[it for p in parts for it in p.items],
        rollout=Rollout.concat([p.rollout for p in parts], pad),
        results=[r for p in parts for r in p.results],
        scores=torch.cat([p.scores for p in parts]),
        probe=probe,
        tokens=sum(p.tokens for p in parts),
        probe_tokens=sum(p.probe_tokens for p in parts),
    )
