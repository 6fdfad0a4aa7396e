"""AlgoConfig: every registry name documented and reachable, bad input named by its flag."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import tyro

from agpo.algos import (
    ADVANTAGES,
    AGGREGATIONS,
    KL_ESTIMATORS,
    OBJECTIVES,
    AlgoConfig,
    ConfigError,
    properties,
)
from agpo.errors import UserError

FAMILIES = {
    "advantage": ADVANTAGES,
    "objective": OBJECTIVES,
    "aggregation": AGGREGATIONS,
    "kl_estimator": KL_ESTIMATORS,
}


def parse(*argv: str) -> AlgoConfig:
    return tyro.cli(AlgoConfig, args=list(argv), prog="agpo train")


@pytest.mark.parametrize("field", sorted(FAMILIES))
def test_every_registry_name_is_documented_and_accepted(field, capsys):
    with pytest.raises(SystemExit):
        parse("--help")
    help_text = capsys.readouterr().out
    for name, fn in FAMILIES[field].items():
        assert (fn.__doc__ or "").strip(), f"{field} {name!r} has no docstring"
        assert name in help_text, f"--help does not mention {field} {name!r}"
        assert getattr(AlgoConfig(**{field: name}), field) == name


@pytest.mark.parametrize("field", sorted(FAMILIES))
def test_unknown_name_lists_valid_ones(field):
    with pytest.raises(ConfigError) as e:
        AlgoConfig(**{field: "nope"})
    flag = "--algo." + field.replace("_", "-")
    assert str(e.value).startswith(flag)
    assert ", ".join(FAMILIES[field].names()) in str(e.value)


def test_flags_reach_nested_knobs():
    cfg = parse(
        "--advantage",
        "agpo_asym",
        "--clip-high",
        "0.28",
        "--adv.asym-lambda-pos",
        "0.5",
        "--adaptive-clip",
        "--adaptive.eps-base",
        "0.25",
    )
    assert (cfg.advantage, cfg.clip_high, cfg.adv.asym_lambda_pos) == ("agpo_asym", 0.28, 0.5)
    assert cfg.adaptive_clip and cfg.adaptive.eps_base == 0.25 and cfg.uses_probe


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"clip_low": 1.5}, "--algo.clip-low"),
        ({"kl_coef": -1.0}, "--algo.kl-coef"),
        ({"adaptive_clip": True, "objective": "pg"}, "--algo.adaptive-clip"),
        ({"dynamic_sampling": True, "advantage": "reinforce"}, "--algo.dynamic-sampling"),
        ({"max_sampling_rounds": 0}, "--algo.max-sampling-rounds"),
    ],
)
def test_bad_combinations_name_the_flag(kwargs, flag):
    with pytest.raises(ConfigError, match=flag):
        AlgoConfig(**kwargs)


@pytest.mark.parametrize("name", ADVANTAGES.names())
def test_dynamic_sampling_is_refused_exactly_without_a_group_baseline(name):
    # dropping all-equal groups changes what reinforce/psr/nsr/w_reinforce learn (they have no
    # group baseline, so those groups carry a signal); the group-relative ones accept it
    if properties(name).group_baseline:
        assert AlgoConfig(advantage=name, dynamic_sampling=True).dynamic_sampling
    else:
        with pytest.raises(ConfigError, match="--algo.dynamic-sampling.*no group baseline"):
            AlgoConfig(advantage=name, dynamic_sampling=True)


def test_dispersion_must_agree_for_agpo_adaptive():
    from agpo.algos import AdaptiveConfig, AdvantageConfig

    with pytest.raises(ConfigError, match="--algo.adaptive.dispersion"):
        AlgoConfig(advantage="agpo_adaptive", adv=AdvantageConfig(dispersion="mad"))
    ok = AlgoConfig(
        advantage="agpo_adaptive",
        adv=AdvantageConfig(dispersion="mad"),
        adaptive=AdaptiveConfig(dispersion="mad"),
    )
    assert ok.adaptive.dispersion == "mad"


def test_config_error_is_a_user_error_naming_the_flag():
    with pytest.raises(UserError, match="--algo.clip-low"):
        AlgoConfig(clip_low=0.0)
    with pytest.raises(ConfigError, match="--algo.adv.beta-pos"):
        AlgoConfig().adv.__class__(beta_pos=-1.0)


def test_every_field_is_documented(capsys):
    with pytest.raises(SystemExit):
        parse("--help")
    help_text = capsys.readouterr().out
    for f in dataclasses.fields(AlgoConfig):
        assert "--" + f.name.replace("_", "-") in help_text, f.name


def test_every_preset_algo_section_loads():
    # The run config's loader covers the whole preset; this pins the algo section on its own.
    import yaml

    from agpo.algos import AdaptiveConfig, AdvantageConfig

    presets = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    for path in presets:
        section = dict((yaml.safe_load(path.read_text()) or {}).get("algo", {}))
        adv = AdvantageConfig(**section.pop("adv", {}))
        adaptive = AdaptiveConfig(**section.pop("adaptive", {}))
        AlgoConfig(adv=adv, adaptive=adaptive, **section)
