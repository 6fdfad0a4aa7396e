"""The reward audit: credited responses that never write their plain-number gold."""

from __future__ import annotations

import pytest

from agpo.eval.summary import summarize, tally
from agpo.rewards.audit import credited_without_gold, writes_gold
from agpo.train.metrics import audit_metrics
from agpo.types import RewardResult, TaskItem


@pytest.mark.parametrize("completion, gold, writes", [
    ("72 + 49 = 121", "121", True),
    ("She makes $1,000 a day.", "1000", True),  # currency and thousands separators
    ("18.00", "18", True),  # the same number
    ("−5", "-5", True),  # a Unicode minus
    ("72 + 49 = 🔍🔍", "121", False),  # the hack SmolLM2 found
    ("12 1", "121", False),
    ("x2 = 7", "2", False),  # a digit glued to a letter is no number
    ("1/2", "\\frac{1}{2}", None),  # not a plain-number gold: not audited
    ("Yes", "Yes", None),
])
def test_writes_gold(completion: str, gold: str, writes: bool | None) -> None:
    assert writes_gold(completion, gold) is writes


def test_only_credited_responses_with_a_number_gold_are_audited() -> None:
    golds = ["121", "121", "121", "x + 1", "45"]
    texts = ["121", "72 + 49 = 🔍🔍", "72 + 49 = ?", "x+1", "44"]
    scores = [1.0, 1.0, 0.0, 1.0, 0.0]
    assert credited_without_gold(golds, texts, scores) == (1, 2)


def test_training_metric_pairs_each_response_with_its_prompts_gold() -> None:
    # Two prompts × 2 responses, in the sampler's order (a prompt's responses together).
    items = [TaskItem("a", "What is 72 + 49?", "121"), TaskItem("b", "What is 7 - 2?", "5")]
    texts = ["121", "72 + 49 = 🔍🔍", "5", "7 - 2 = 5"]
    results = [RewardResult(1.0, None, None)] * 4
    pair = audit_metrics(items, texts, results, 2)["reward/credited_without_gold"]
    assert pair.tolist() == [1.0, 4.0]  # a mean over credited responses: 0.25


def test_an_evaluation_audits_its_correct_samples_against_their_golds() -> None:
    # p0: the hack and an honest answer; p1: a gold that is no plain number (not audited);
    # p2: a wrong answer (not credited) and a problem whose gold was unusable (left out).
    rows = [
        {"problem_id": "p0", "sample": 0, "completion": "72 + 49 = 🔍🔍", "correct": True},
        {"problem_id": "p0", "sample": 1, "completion": "121", "correct": True},
        {"problem_id": "p1", "sample": 0, "completion": "x + 1", "correct": True},
        {"problem_id": "p2", "sample": 0, "completion": "44", "correct": False},
        {"problem_id": "p3", "sample": 0, "completion": "7", "correct": False,
         "failure": "bad_gold"},
    ]
    golds = {"p0": "121", "p1": "x + 1", "p2": "45", "p3": "7"}
    audited = summarize(tally(rows, golds=golds))
    assert (audited["credited_audited"], audited["credited_without_gold"]) == (2, 0.5)
    plain = summarize(tally(rows))  # a samples file without its problems: no audit, no keys
    assert "credited_audited" not in plain and "credited_without_gold" not in plain
    assert {k: v for k, v in audited.items() if not k.startswith("credited_")} == plain


@pytest.mark.parametrize("share, warned", [(0.25, True), (0.0, False)])
def test_agpo_eval_warns_when_correct_samples_do_not_write_their_gold(
    share: float, warned: bool, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys,
) -> None:
    import agpo.eval.cli as eval_cli

    result = {"pass@1": 0.5, "model": "m", "credited_audited": 8, "credited_without_gold": share}
    monkeypatch.setattr(eval_cli, "run", lambda cfg, say=None: result)
    assert eval_cli.main(["--model", "m", "--task", "arith", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert ("warning: 2 of 8 correct samples never write their gold number" in err) is warned
