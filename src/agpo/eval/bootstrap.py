"""Percentile bootstrap over problems for pass@k curves.

The unit of resampling is the problem: the n samples of one problem are not independent draws of
the benchmark, so resampling samples would make the interval far too narrow. Per-problem pass@k
is computed once ([P, K] matrix); each replicate averages a resampled set of its rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agpo.eval.passk import pass_at_k


def per_problem_passk(ns: Sequence[int], cs: Sequence[int], ks: Sequence[int]) -> np.ndarray:
    """Unbiased pass@k of each problem: [P, K]."""
    return np.array([[pass_at_k(n, c, k) for k in ks] for n, c in zip(ns, cs, strict=True)])


def bootstrap_ci(
    values: np.ndarray, reps: int = 1000, level: float = 0.95, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) percentile interval of the column means of ``values`` [P, K] → [K] each.

    Resamples rows (problems) with replacement ``reps`` times; fixed ``seed`` so a report
    renders the same twice.
    """
    p = values.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, p, size=(reps, p))  # [reps, P]
    means = values[idx].mean(axis=1)  # [reps, K]
    tail = (1.0 - level) / 2 * 100
    return np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)


def mean_ci(
    values: np.ndarray, reps: int = 1000, level: float = 0.95, seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of per-problem values [P] (``bootstrap_ci`` on one column).

    Pass the difference of two models' per-problem values for a paired interval.
    """
    low, high = bootstrap_ci(values.reshape(-1, 1), reps, level, seed)
    return float(values.mean()), float(low[0]), float(high[0])
