"""`agpo demo` end to end on a tiny budget, and its flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agpo.cli import main as agpo
from agpo.errors import UserError
from agpo.testbed.demo import DemoConfig, run_demo
from agpo.testbed.evidence import EvidenceConfig


def test_tiny_demo_writes_a_report(testbed_base: Path, testbed_cache: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGPO_CACHE", str(testbed_cache))
    cfg = DemoConfig(out=tmp_path / "demo", methods=("grpo", "agpo_adaptive"), steps=3, n=8,
                     limit=20, progress=False)
    summary = run_demo(cfg)
    out = cfg.out
    for name in ("report.html", "passk.png", "training.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "summary.json").read_text())
    assert [e["label"] for e in data["evals"]] == ["base", "GRPO", "AGPO-adaptive"]
    for e in data["evals"]:
        ks = [int(k) for k in e["passk"]]
        assert ks == [1, 2, 4, 8]
        curve = list(e["passk"].values())
        assert curve == sorted(curve)  # pass@k never falls with k
    # Equal generated-token budget: 3 steps × 32 prompts × 8 × 5 tokens = 3,840 each; a run
    # stops at the first step that reaches it, AGPO-adaptive's probe groups included.
    assert data["notes"]["token_budget"] == 3840
    for run in ("run_grpo", "run_agpo_adaptive"):
        last = json.loads((out / run / "metrics.jsonl").read_text().splitlines()[-1])
        assert 3840 * 0.99 <= last["perf/tokens_total"] < 3840 + 2 * 32 * 8 * 5
    assert "| base |" in summary.read_text()


def test_demo_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        agpo(["demo", "--help"])
    assert e.value.code == 0
    assert "--methods" in capsys.readouterr().out
    assert agpo(["demo", "--methods", "grpo", "nope"]) == 2
    assert "valid names" in capsys.readouterr().err


def test_evidence_checks_methods_as_demo_does() -> None:
    # One check (demo.check_methods) serves both commands: same rule, same message.
    for bad in (("grpo", "nope"), ()):
        with pytest.raises(UserError) as demo_err:
            DemoConfig(methods=bad)
        with pytest.raises(UserError) as evidence_err:
            EvidenceConfig(methods=bad)
        assert str(evidence_err.value) == str(demo_err.value)
        assert "valid names are grpo, " in str(demo_err.value)
