"""Accuracy, macro/micro-F1, per-class F1 and the confusion matrix, worked by hand."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.apps.relevance.metrics import classification_report


def test_hand_worked() -> None:
    gold = ["E", "E", "E", "S", "S", "I"]
    pred = ["E", "E", "S", "S", "I", None]  # one prediction missing (unparseable)
    r = classification_report(gold, pred, ["E", "S", "I"])
    # correct: 3 of 6 → accuracy 0.5
    # E: tp 2, fp 0, fn 1 → 2·2/(4+0+1) = 0.8
    # S: tp 1, fp 1, fn 1 → 2/(2+1+1) = 0.5
    # I: tp 0, fp 1, fn 1 → 0
    assert r["accuracy"] == 0.5
    assert r["per_class_f1"] == {"E": 0.8, "S": 0.5, "I": 0.0}
    assert abs(r["macro_f1"] - 1.3 / 3) < 1e-12
    # micro: tp 3, fp 2, fn 3 → 6/(6+2+3) = 6/11 (the missing prediction is only a false negative)
    assert abs(r["micro_f1"] - 6 / 11) < 1e-12
    assert r["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 0]]


@settings(deadline=None, derandomize=True, max_examples=50)
@given(st.lists(st.tuples(st.sampled_from("ESCI"), st.sampled_from("ESCI")), min_size=1))
def test_micro_f1_is_accuracy_when_every_prediction_is_a_label(pairs: list[tuple[str, str]]) -> None:
    gold, pred = zip(*pairs)
    r = classification_report(gold, pred, list("ESCI"))
    assert abs(r["micro_f1"] - r["accuracy"]) < 1e-12
    assert sum(map(sum, r["confusion"])) == len(pairs)
    assert 0.0 <= r["macro_f1"] <= 1.0
