"""The claims an evidence run tests, each by a rule fixed here in advance, on the per-problem
pass@k of the models of one seed. The table shows the measured numbers whether a claim holds
or not; it has a row for each claim the study's methods test, "–" until they are evaluated.

Intervals are 95% percentile bootstrap intervals over problems, paired for differences (the
same resampled problems for both models: ``agpo.eval.bootstrap.mean_ci`` of the per-problem
difference). pass@n is pass@k at k = n, the samples per problem.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agpo.apps.evidence.methods import METHODS
from agpo.eval.bootstrap import mean_ci, per_problem_passk
from agpo.eval.samples import SAMPLES, golds_of, iter_rows, read_problems
from agpo.eval.summary import ProblemTally, tally
from agpo.io import read_metrics


@dataclass(frozen=True)
class Counts:
    """The per-problem tally of one eval, and the share of its samples that carry the study's
    marker (the testbed's rare strategy B; None for a study without one)."""

    tallies: dict[str, ProblemTally]
    share: float | None = None

    @property
    def n(self) -> int:
        return min(t.n for t in self.tallies.values() if t.n)

    @property
    def audit(self) -> tuple[int, int]:
        """(correct samples that never write their numeric gold, correct samples with a numeric
        gold): the reward audit of ``agpo.eval.summary``."""
        ts = self.tallies.values()
        return sum(t.unwritten for t in ts), sum(t.audited for t in ts)

    def values(self, pids: Sequence[str], ks: Sequence[int]) -> np.ndarray:
        """Per-problem pass@k [P, K] in the order of ``pids``."""
        ts = [self.tallies[p] for p in pids]
        return per_problem_passk([t.n for t in ts], [t.c for t in ts], ks)


def load_counts(eval_dir: Path, marker: Callable[[str], bool] | None = None) -> Counts:
    """One pass over an eval's samples.jsonl: the tally (audited against the golds of its
    problems.jsonl), and the share of completions for which ``marker`` is true (None without a
    marker)."""
    marked = total = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal marked, total
        for row in iter_rows(eval_dir / SAMPLES):
            if marker is not None:
                marked += marker(str(row.get("completion", "")))
            total += 1
            yield row

    tallies = tally(rows(), golds=golds_of(read_problems(eval_dir)))
    return Counts(tallies, marked / max(1, total) if marker is not None else None)


@dataclass(frozen=True)
class Scores:
    """Per-problem pass@k values of one model, aligned by problem order ([P] per k)."""

    n: int
    values: dict[int, np.ndarray]


def scores_of(counts: Counts, pids: Sequence[str], ks: Sequence[int]) -> Scores:
    values = counts.values(pids, ks)  # [P, K]
    return Scores(counts.n, {k: values[:, i] for i, k in enumerate(ks)})


Verdict = tuple[str, bool] | None
"""(the measured numbers as text, whether the claim holds by its rule); None: not measured."""
Rule = Callable[[dict[str, Scores], dict[str, float], int, int], Verdict]
"""(scores by model name, final training entropy by method, n, bootstrap resamples) → verdict."""
CI = tuple[float, float, float]


@dataclass(frozen=True)
class Claim:
    """One claim: the methods it compares with each other or with the base model, and its rule
    (the rule's docstring states it)."""

    needs: frozenset[str]
    rule: Rule

    def applies(self, methods: Collection[str]) -> bool:
        """Whether a study of ``methods`` tests this claim (its table has a row for it)."""
        return self.needs <= set(methods)

    def __call__(self, s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
        """The verdict; None until every method it needs has been evaluated ("–")."""
        return self.rule(s, ent, n, r) if self.needs <= s.keys() else None


def _diff(a: Scores, b: Scores, k: int, resamples: int, seed: int) -> CI:
    return mean_ci(a.values[k] - b.values[k], resamples, seed=seed)


def fmt_diff(ci: CI) -> str:
    return f"{ci[0]:+.3f} [{ci[1]:+.3f}, {ci[2]:+.3f}]"


def grpo_shrinks(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
    """GRPO's pass@n is below the base model's (paired interval entirely below 0)."""
    d = _diff(s["grpo"], s["base"], n, r, 1)
    return f"pass@{n}(GRPO) − base = {fmt_diff(d)}", d[2] < 0


def agpo_asym_keeps(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
    """AGPO-asymmetric raises pass@1 (interval above 0) and keeps pass@n ≥ base (interval of
    the difference reaches 0 or above)."""
    d1 = _diff(s["agpo_asym"], s["base"], 1, r, 2)
    dn = _diff(s["agpo_asym"], s["base"], n, r, 3)
    text = f"pass@1 − base = {fmt_diff(d1)}; pass@{n} − base = {fmt_diff(dn)}"
    return text, d1[1] > 0 and dn[2] >= 0


def passk_keeps(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
    """The analytic pass@k objective keeps pass@n ≥ base (interval of the difference reaches 0
    or above): is the strongest baseline for the boundary claim itself keeping the boundary?"""
    d = _diff(s["passk_analytic"], s["base"], n, r, 5)
    return f"pass@{n}(Pass@k-analytic) − base = {fmt_diff(d)}", d[2] >= 0


def _asym_vs(baseline: str, seed: int) -> Claim:
    def rule(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
        d = _diff(s["agpo_asym"], s[baseline], n, r, seed)
        return f"pass@{n}(AGPO-asymmetric) − {METHODS[baseline].label} = {fmt_diff(d)}", d[2] >= 0

    rule.__doc__ = (f"AGPO-asymmetric's pass@n is not below {METHODS[baseline].label}'s "
                    "(paired interval of the difference reaches 0 or above).")
    return Claim(frozenset({"agpo_asym", baseline}), rule)


def asym_channels(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
    """Raising β_pos (0.5 → 0.9) raises the final training token entropy over GRPO's; raising
    β_neg (0.5 → 0.75) lowers it (point estimates: the mean over the last 20% of steps)."""
    if not {"grpo", "asym_pos_only", "asym_neg_only"} <= ent.keys():
        return None  # a run that logged no entropy
    g, p, q = ent["grpo"], ent["asym_pos_only"], ent["asym_neg_only"]
    text = f"entropy GRPO {g:.4f}, β+ 0.9: {p:.4f}, β− 0.75: {q:.4f}"
    return text, p > g > q


def asym_keeps_entropy(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
    """AsymGRPO at its reported β (β_pos 0.9 > 0.5 strengthens the entropy-keeping positive
    channel, β_neg 0.4 < 0.5 weakens the entropy-removing negative one) ends training with a
    higher token entropy than GRPO (point estimates: the mean over the last 20% of steps)."""
    if not {"grpo", "asym_grpo"} <= ent.keys():
        return None  # a run that logged no entropy
    g, a = ent["grpo"], ent["asym_grpo"]
    return f"entropy GRPO {g:.4f}, AsymGRPO {a:.4f}", a > g


def adaptive_beats_grpo(s: dict[str, Scores], ent: dict[str, float], n: int, r: int) -> Verdict:
    """AGPO-adaptive's pass@1 exceeds GRPO's at the same token budget (interval above 0)."""
    d = _diff(s["agpo_adaptive"], s["grpo"], 1, r, 4)
    return f"pass@1(AGPO-adaptive) − GRPO = {fmt_diff(d)}", d[1] > 0


CLAIMS: dict[str, Claim] = {
    "GRPO shrinks pass@n below base": Claim(frozenset({"grpo"}), grpo_shrinks),
    "AGPO-asymmetric keeps pass@n ≥ base while raising pass@1":
        Claim(frozenset({"agpo_asym"}), agpo_asym_keeps),
    "Pass@k-analytic keeps pass@n ≥ base": Claim(frozenset({"passk_analytic"}), passk_keeps),
    "AGPO-asymmetric's pass@n not below Pass@k-analytic's": _asym_vs("passk_analytic", 6),
    "AGPO-asymmetric's pass@n not below GRPO-pass@k's": _asym_vs("grpo_passk", 7),
    "AsymGRPO: β_pos raises entropy, β_neg lowers it":
        Claim(frozenset({"grpo", "asym_pos_only", "asym_neg_only"}), asym_channels),
    "AsymGRPO (0.9/0.4) ends with more entropy than GRPO":
        Claim(frozenset({"grpo", "asym_grpo"}), asym_keeps_entropy),
    "AGPO-adaptive beats GRPO at equal token budget":
        Claim(frozenset({"grpo", "agpo_adaptive"}), adaptive_beats_grpo),
}
"""Every claim, in the order of the verdict table (the rule of each: its docstring). A study's
table has the rows of the claims its methods test."""


@dataclass(frozen=True)
class TrainStats:
    """What a finished training run's metrics.jsonl says about it."""

    steps: int
    tokens: int
    entropy: float | None
    """Mean training token entropy over the last 20% of its steps (None: not logged)."""


def train_stats(run_dir: Path) -> TrainStats:
    rows = read_metrics(run_dir / "metrics.jsonl")
    tail = [r["rollout/entropy"] for r in rows[-max(1, len(rows) // 5):]
            if isinstance(r.get("rollout/entropy"), int | float)]
    tokens = rows[-1].get("perf/tokens_total") if rows else None
    return TrainStats(len(rows), int(tokens or 0), sum(tail) / len(tail) if tail else None)
