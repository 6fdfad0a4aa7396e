"""Evaluation math: unbiased pass@k, avg@n, maj@k, coverage (docs/methods.md §7). Pure Python.

No torch and no NumPy here: ``agpo passk`` imports this and must start fast.

``pass_at_k`` itself (Chen et al. 2021, in a stable product form) lives in agpo.passk, where
training's pass@k advantage uses it too; it is importable from here as always.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from agpo.passk import pass_at_k

__all__ = ["avg_at_n", "coverage", "majority_at_k", "pass_at_k", "pass_at_k_curve", "report_ks",
           "unique_correct"]


def pass_at_k_curve(ns: Sequence[int], cs: Sequence[int], ks: Sequence[int]) -> dict[int, float]:
    """Mean pass@k over problems for each k: ns[j] samples and cs[j] correct of problem j.

    Every problem must have at least max(ks) samples (pass@k is reported only where defined).
    """
    if len(ns) != len(cs) or not ns:
        raise ValueError(f"need one (n, c) per problem and at least one; got {len(ns)}, {len(cs)}")
    return {k: math.fsum(pass_at_k(n, c, k) for n, c in zip(ns, cs)) / len(ns) for k in ks}


def report_ks(n: int) -> list[int]:
    """The k reported for n samples: powers of two up to n, plus n when it is not one.

    >>> report_ks(12)
    [1, 2, 4, 8, 12]
    """
    if n < 1:
        raise ValueError(f"need n ≥ 1 samples; got {n}")
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks if ks[-1] == n else [*ks, n]


def avg_at_n(ns: Sequence[int], cs: Sequence[int]) -> float:
    """avg@n: mean over problems of the per-problem accuracy c/n (= mean pass@1)."""
    if len(ns) != len(cs) or not ns:
        raise ValueError(f"need one (n, c) per problem and at least one; got {len(ns)}, {len(cs)}")
    return math.fsum(c / n for n, c in zip(ns, cs)) / len(ns)


def coverage(cs: Sequence[int]) -> float:
    """Fraction of problems solved at least once (pass@n of the whole sample)."""
    if not cs:
        raise ValueError("need at least one problem")
    return sum(c > 0 for c in cs) / len(cs)


def majority_at_k(answers: Sequence[str | None], correct: Sequence[bool], k: int) -> float:
    """maj@k of one problem: is the most frequent answer among the first k samples correct?

    Estimator: the vote of the first k samples in sampling order. Samples are i.i.d., so this is
    an unbiased estimate of the expected maj@k over random k-subsets (with more variance than
    averaging over subsets). ``None`` (no answer extracted) never gets a vote; k samples without
    any answer score 0. A tie between top answers scores the fraction of the tied answers that
    are correct (the expectation of a uniformly random tie-break). An answer counts as correct
    when any sample carrying it was marked correct.
    """
    if len(answers) != len(correct):
        raise ValueError(f"{len(answers)} answers but {len(correct)} correctness flags")
    if not 1 <= k <= len(answers):
        raise ValueError(f"need 1 ≤ k ≤ {len(answers)} samples; got k={k}")
    votes = Counter(a for a in answers[:k] if a is not None)
    if not votes:
        return 0.0
    right = {a for a, ok in zip(answers, correct) if ok and a is not None}
    top = max(votes.values())
    tied = [a for a, v in votes.items() if v == top]
    return sum(a in right for a in tied) / len(tied)


def unique_correct(answers: Sequence[str | None], correct: Sequence[bool]) -> int:
    """Number of distinct extracted answers among the correct samples (None excluded)."""
    return len({a for a, ok in zip(answers, correct) if ok and a is not None})
