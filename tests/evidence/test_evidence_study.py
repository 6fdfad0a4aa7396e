"""The general evidence run's pieces: how a method's algo section meets the shared run config,
what `agpo evidence` refuses before any job starts, the claims' rules, the shipped presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agpo.algos.config import AlgoConfig
from agpo.apps.evidence.claims import CLAIMS, Scores
from agpo.apps.evidence.cli import EvidenceArgs, build_study
from agpo.apps.evidence.methods import METHODS, check_methods
from agpo.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def test_a_method_keeps_the_run_configs_algo_settings() -> None:
    base = AlgoConfig(kl_coef=0.05, clip_low=0.1, aggregation="seq_mean_token_mean")
    adaptive = METHODS["agpo_adaptive"].apply(base)
    assert (adaptive.advantage, adaptive.adaptive_clip, adaptive.adaptive_temperature) == (
        "agpo_adaptive", True, True)
    assert (adaptive.kl_coef, adaptive.clip_low, adaptive.aggregation) == (
        0.05, 0.1, "seq_mean_token_mean")
    pos_only = METHODS["asym_pos_only"].apply(base)
    assert (pos_only.adv.beta_pos, pos_only.adv.beta_neg) == (0.9, 0.5)
    assert METHODS["grpo"].apply(base) == base  # GRPO is the default: nothing changes
    # Dr.GRPO's constant aggregation is part of the method, so it wins over the shared one.
    assert METHODS["dr_grpo"].apply(base).aggregation == "constant"


def test_methods_are_named_once() -> None:
    with pytest.raises(UserError, match="--methods: grpo named twice"):
        check_methods(("grpo", "agpo_asym", "grpo"))


@pytest.mark.parametrize("flags, msg", [
    (dict(), "compares methods at one generated-token budget"),
    (dict(token_budget=100, task="x.jsonl"), "a task file has no held-out split"),
    (dict(token_budget=100, temperature=1e-45), r"--temperature 1e-45: must be in"),
    (dict(token_budget=100, eval_split="nope"), "split 'nope' does not exist"),
    (dict(token_budget=100, engine="nope"), "--engine: unknown name 'nope'; valid: transformers"),
])
def test_evidence_refuses_before_any_job(flags: dict, msg: str, tmp_path: Path) -> None:
    task = {"task": str(tmp_path / "x.jsonl")} if "task" in flags else {}
    if task:
        (tmp_path / "x.jsonl").write_text('{"id": "a", "prompt": "1+1=", "gold": "2"}\n')
    with pytest.raises(UserError, match=msg):  # a flag's own check, or the study's
        build_study(EvidenceArgs(out=tmp_path / "ev", model="tiny", **{"task": "arith", **flags, **task}))
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("preset", sorted((REPO / "configs" / "evidence").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_evidence_preset_loads(preset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agpo.configs import from_yaml

    monkeypatch.chdir(REPO)  # presets name their run config relative to the repository
    study = build_study(from_yaml(preset, EvidenceArgs))
    assert study.base.train.token_budget > 0 and study.eval.problems >= 1
    # held-out problems are never trained on: a registered task's other split
    assert study.eval.split != study.base.task.split or study.eval.task != study.base.task.spec


def test_the_training_engine_reaches_the_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    from agpo.apps.evidence.study import settings_of
    from agpo.configs import from_yaml

    monkeypatch.chdir(REPO)
    study = build_study(from_yaml(REPO / "configs/evidence/smollm2_arith.yaml", EvidenceArgs))
    assert study.eval.engine == study.base.rollout.engine == "transformers"
    # A run started before the evaluation named its engine saved no such key; it continues.
    assert "engine" not in settings_of(study)["eval"]


def _scores(*per_problem: float) -> Scores:
    values = np.array(per_problem)
    return Scores(4, {1: values / 4, 4: values})


def test_claim_rules_on_hand_made_numbers() -> None:
    # Four problems, all solved at pass@4 by the base model. GRPO losing all four: the paired
    # difference is −1 on every problem, so every resample's mean is −1 and the interval
    # [−1, −1] lies below 0 ("yes"); keeping all four gives [0, 0] ("no").
    base = _scores(1, 1, 1, 1)
    shrinks = CLAIMS["GRPO shrinks pass@n below base"]
    assert shrinks({"base": base, "grpo": _scores(0, 0, 0, 0)}, {}, 4, 200)[1] is True
    assert shrinks({"base": base, "grpo": _scores(1, 1, 1, 1)}, {}, 4, 200)[1] is False
    assert shrinks({"base": base}, {}, 4, 200) is None  # not evaluated yet: "–"
    entropy = CLAIMS["AsymGRPO (0.9/0.4) ends with more entropy than GRPO"]
    evaluated = {"base": base, "grpo": base, "asym_grpo": base}
    assert entropy(evaluated, {"grpo": 0.30, "asym_grpo": 0.45}, 4, 200) == (
        "entropy GRPO 0.3000, AsymGRPO 0.4500", True)
    assert entropy(evaluated, {"grpo": 0.30}, 4, 200) is None  # a run that logged no entropy
    assert entropy({"base": base, "grpo": base}, {"grpo": 0.3, "asym_grpo": 0.45}, 4, 200) is None


def test_a_study_has_the_rows_of_the_claims_its_methods_test() -> None:
    tested = [t for t, c in CLAIMS.items() if c.applies(("grpo", "agpo_asym", "passk_analytic"))]
    assert tested == ["GRPO shrinks pass@n below base",
                      "AGPO-asymmetric keeps pass@n ≥ base while raising pass@1",
                      "Pass@k-analytic keeps pass@n ≥ base",
                      "AGPO-asymmetric's pass@n not below Pass@k-analytic's"]
