"""Evaluation math: unbiased pass@k, avg@n, maj@k, coverage (METHODS.md §5). Pure Python.

No torch and no NumPy here: ``agpo passk`` imports this and must start fast.

pass@k (Chen et al. 2021) is the probability that at least one of k samples drawn without
replacement from n (c of them correct) is correct: 1 − C(n−c, k)/C(n, k). The binomials overflow
floats for n in the hundreds, so it is computed in the stable product form
1 − Π_{i=n−c+1}^{n} (1 − k/i) (or its k-term twin, whichever is shorter), summed in log space
(``log1p``/``expm1``) so that small values keep their relative precision too: exact to ~1e−12
for n up to many thousands.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with n samples, c correct. 1 when n − c < k.

    >>> pass_at_k(4, 1, 2)  # 1 − C(3,2)/C(4,2) = 1 − 3/6
    0.5
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 ≤ c ≤ n; got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 ≤ k ≤ n; got n={n}, k={k} (pass@k needs at least k samples)")
    if n - c < k:
        return 1.0
    if k == 1:  # exactly c/n (the log-space product below is only within rounding of it)
        return c / n
    # C(n−c, k)/C(n, k) factors two ways: Π_{i=n−c+1}^{n} (1 − k/i) (c terms) or
    # Π_{i=0}^{k−1} (1 − c/(n−i)) (k terms); take the shorter product.
    if c <= k:
        terms = (-k / i for i in range(n - c + 1, n + 1))
    else:
        terms = (-c / (n - i) for i in range(k))
    return -math.expm1(math.fsum(map(math.log1p, terms)))


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
