"""The unbiased pass@k estimator (Chen et al. 2021), pure Python: one formula that training (the
``passk_analytic`` advantage of agpo.algos) and evaluation (agpo.eval.passk, which builds the
reported metrics on it) both use, at the base of the library so neither climbs to the other.

pass@k is the probability that at least one of k samples drawn without replacement from n (c of
them correct) is correct: 1 − C(n−c, k)/C(n, k). The binomials overflow floats for n in the
hundreds, so it is computed in the stable product form 1 − Π_{i=n−c+1}^{n} (1 − k/i) (or its
k-term twin, whichever is shorter), summed in log space (``log1p``/``expm1``) so that small
values keep their relative precision too: exact to ~1e−12 for n up to many thousands.

No torch and no NumPy here: ``agpo passk`` imports this and must start fast.
"""

from __future__ import annotations

import math


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
