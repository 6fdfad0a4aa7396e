"""Classification metrics against human labels: accuracy, macro-F1, micro-F1, per-class F1 and
the confusion matrix. Plain Python over label strings: the inputs are a few thousand labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def confusion(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """``m[i][j]`` = pairs whose gold is ``labels[i]`` and prediction ``labels[j]``.
    Predictions outside ``labels`` (e.g. an unparseable teacher output, None) count in no
    column, so they lower recall and accuracy without inventing a class."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels vs {len(pred)} predictions")
    index = {lab: i for i, lab in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, pred):
        if g in index and p in index:
            m[index[g]][index[p]] += 1
    return m


def _f1(tp: int, fp: int, fn: int) -> float:
    # The F1 of a class that is neither present nor predicted is 0 here (sklearn's
    # zero_division=0), so macro-F1 never rewards predicting nothing.
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


def classification_report(
    gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]
) -> dict[str, Any]:
    """accuracy, macro_f1, micro_f1, per_class_f1 {label: f1}, confusion [[...]], labels, n.

    Micro-F1 over a single-label task with every prediction inside ``labels`` equals accuracy;
    it differs when some predictions are missing (None), which count as false negatives only.

    >>> r = classification_report(["E", "E", "I", "I"], ["E", "I", "I", "I"], ["E", "I"])
    >>> r["accuracy"], round(r["per_class_f1"]["E"], 3), round(r["per_class_f1"]["I"], 3)
    (0.75, 0.667, 0.8)
    """
    pred_s = [p if p is not None else "" for p in pred]
    m = confusion(gold, pred_s, labels)
    n = len(gold)
    per_class, tps, fps, fns = {}, 0, 0, 0
    for i, lab in enumerate(labels):
        tp = m[i][i]
        fp = sum(m[r][i] for r in range(len(labels))) - tp
        fn = sum(1 for g, p in zip(gold, pred_s) if g == lab and p != lab)
        per_class[lab] = _f1(tp, fp, fn)
        tps, fps, fns = tps + tp, fps + fp, fns + fn
    correct = sum(1 for g, p in zip(gold, pred_s) if g == p)
    return {
        "n": n,
        "accuracy": correct / n if n else 0.0,
        "macro_f1": sum(per_class.values()) / len(labels) if labels else 0.0,
        "micro_f1": _f1(tps, fps, fns),
        "per_class_f1": per_class,
        "confusion": m,
        "labels": list(labels),
    }
