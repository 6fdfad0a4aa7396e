"""From sample rows to the metrics of passk.json, in one streaming pass.

Memory holds a small record per problem: counts, and per sample only its index, extracted answer
and verdict (maj@k votes over the first k samples in sampling order), never the completions.

Metrics (METHODS §5): ``pass@K`` for K in ``report_ks(n)`` where n is the smallest number of
samples any problem has (pass@k is reported only where every problem has at least k samples);
``avg@n``; ``maj@K`` (majority vote over the extracted answers); ``coverage`` (fraction of
problems solved at least once); ``distinct_correct`` (distinct correct extracted answers per
problem, mean); ``mean_length`` (response tokens); ``mean_token_entropy`` (mean of the rows'
``nll``, see ``agpo.eval.samples``); ``limited_by`` (a problem with the fewest samples, which
limits k). Given the problems' golds, also the reward audit of ``agpo.rewards.audit``:
``credited_audited`` (correct samples whose gold is a plain number) and
``credited_without_gold`` (the share of them that never write it; above 0, read those
samples). Rows whose gold answer was unusable (failure ``bad_gold``) are left out and their
problems counted in ``skipped_problems``: the one rule of ``agpo eval``, ``agpo passk``, the
report and training (where such a group leaves the loss).

This is the one pass@k summary: ``agpo eval`` (passk.json), ``agpo passk`` and ``agpo report``
all call ``tally`` and ``summarize``. Rows without ``parsed`` (a samples file from elsewhere)
give no maj@k or distinct_correct, rows without ``length`` no mean_length.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agpo.eval.passk import (
    avg_at_n, coverage, majority_at_k, pass_at_k_curve, report_ks, unique_correct,
)
from agpo.eval.samples import iter_rows
from agpo.rewards.audit import writes_gold

BAD_GOLD = "bad_gold"


@dataclass
class ProblemTally:
    """What one problem's samples add up to."""

    votes: list[tuple[int, str | None, bool]] = field(default_factory=list)
    length: int = 0
    nlls: list[float] = field(default_factory=list)
    answered: bool = False
    """Some row carried an extracted answer field (``parsed``), so maj@k means something."""
    measured: bool = False
    """Some row carried its ``length``."""
    audited: int = 0
    """Correct rows whose gold is a plain number (given the gold)."""
    unwritten: int = 0
    """Of those, the rows whose completion never writes the gold."""

    @property
    def n(self) -> int:
        return len(self.votes)

    @property
    def c(self) -> int:
        return sum(ok for _, _, ok in self.votes)

    def add(self, row: dict[str, Any], gold: str | None = None) -> None:
        """One row checked by ``agpo.eval.samples.check_row``; without ``sample`` its place is
        its order of arrival. With its problem's ``gold`` a correct row is audited."""
        parsed = row.get("parsed")
        sample = row.get("sample")
        self.votes.append((self.n if sample is None else int(sample),
                           None if parsed is None else str(parsed), bool(row["correct"])))
        self.answered = self.answered or "parsed" in row
        if row.get("length") is not None:
            self.length += int(row["length"])
            self.measured = True
        if row.get("nll") is not None:
            self.nlls.append(float(row["nll"]))
        if gold is not None and row["correct"]:
            written = writes_gold(str(row.get("completion", "")), gold)
            if written is not None:
                self.audited += 1
                self.unwritten += not written

    def answers(self) -> tuple[list[str | None], list[bool]]:
        """Extracted answers and verdicts in sampling order."""
        ordered = sorted(self.votes)
        return [a for _, a, _ in ordered], [ok for _, _, ok in ordered]


def tally(
    rows: Iterable[dict[str, Any]], into: dict[str, ProblemTally] | None = None,
    golds: Mapping[str, str] | None = None,
) -> dict[str, ProblemTally]:
    """problem_id → ProblemTally (problems in order of first appearance), adding to ``into``;
    with ``golds`` (problem_id → gold answer) the correct rows are audited.

    A problem whose gold was unusable keeps an empty tally (counted as skipped). Rows are
    assumed unique per (problem_id, sample), as the runner writes them.
    """
    out = {} if into is None else into
    for row in rows:
        pid = str(row["problem_id"])
        t = out.setdefault(pid, ProblemTally())
        if row.get("failure") != BAD_GOLD:
            t.add(row, None if golds is None else golds.get(pid))
    return out


def summarize(tallies: dict[str, ProblemTally]) -> dict[str, Any]:
    """passk.json's metrics from per-problem tallies (see the module docstring)."""
    probs = [p for p in tallies.values() if p.n]
    skipped = len(tallies) - len(probs)
    if not probs:
        return {"num_problems": 0, "n": 0, "num_samples": 0, "skipped_problems": skipped}
    ns, cs = [p.n for p in probs], [p.c for p in probs]
    ks = report_ks(min(ns))
    out: dict[str, Any] = {f"pass@{k}": v for k, v in pass_at_k_curve(ns, cs, ks).items()}
    out["avg@n"] = avg_at_n(ns, cs)
    votes = [p.answers() for p in probs]
    answered = any(p.answered for p in probs)
    for k in ks if answered else []:
        out[f"maj@{k}"] = math.fsum(majority_at_k(a, ok, k) for a, ok in votes) / len(probs)
    out["coverage"] = coverage(cs)
    if answered:
        out["distinct_correct"] = sum(unique_correct(a, ok) for a, ok in votes) / len(probs)
    if any(p.measured for p in probs):
        out["mean_length"] = sum(p.length for p in probs) / sum(ns)
    if audited := sum(p.audited for p in probs):
        out["credited_audited"] = audited
        out["credited_without_gold"] = sum(p.unwritten for p in probs) / audited
    nlls = [x for p in probs for x in p.nlls]
    out.update(
        # fsum: exact, so a resumed eval (rows in another order) reports the same bits
        mean_token_entropy=math.fsum(nlls) / len(nlls) if nlls else None,
        num_problems=len(probs),
        n=min(ns),
        num_samples=sum(ns),
        skipped_problems=skipped,
        limited_by=next(pid for pid, p in tallies.items() if p.n == min(ns)),
    )
    return out


def audit_counts(metrics: dict[str, Any]) -> tuple[int, int] | None:
    """(correct samples that never write their gold, correct samples audited) from
    ``summarize``'s metrics; None where nothing was audited."""
    audited = metrics.get("credited_audited")
    if not audited:
        return None
    return round(metrics["credited_without_gold"] * audited), audited


def summarize_samples(path: Path) -> dict[str, float | int]:
    """passk.json's metrics straight from a samples.jsonl (``agpo passk`` agrees on pass@k)."""
    return summarize(tally(iter_rows(path)))
