"""Every shipped relevance preset loads (and the demo preset is the measured default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agpo.apps.relevance.cli import load_preset
from agpo.apps.relevance.demo import RelevanceDemoConfig
from agpo.errors import UserError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_demo_preset_is_the_default() -> None:
    preset = load_preset(RelevanceDemoConfig, CONFIGS / "apps" / "relevance_demo.yaml")
    assert preset == RelevanceDemoConfig()


def test_teacher_preset_loads_in_the_trainer() -> None:
    from agpo.train.config import load_config

    cfg = load_config(CONFIGS / "relevance_teacher.yaml", [])
    assert (cfg.reward.verifier, cfg.algo.advantage) == ("label", "agpo_asym")
    assert cfg.reward.labels == ("E", "S", "C", "I")


def test_unknown_preset_key_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl: {stepz: 3}\n")
    with pytest.raises(UserError, match=r"bad.yaml:1: rl.stepz: unknown field"):
        load_preset(RelevanceDemoConfig, bad)


def test_preset_value_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("world: {noise: 0.2}\nseeds: [0, one]\n")
    with pytest.raises(UserError, match=r"bad.yaml:2: seeds: expected an integer"):
        load_preset(RelevanceDemoConfig, bad)
