"""Run config: presets load, defaults < YAML < flags, bad input fails before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from agpo.algos import ADVANTAGES
from agpo.errors import UserError
from agpo.train.cli import main
from agpo.train.config import RunConfig, load_config, read_yaml

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_preset_loads(path):
    assert isinstance(read_yaml(path), RunConfig)


def test_presets_cover_every_method():
    names = {p.stem for p in CONFIGS}
    assert "dapo" in names
    for name in ADVANTAGES.names():  # every registered estimator has a preset that uses it
        assert read_yaml(CONFIGS[0].parent / f"{name}.yaml").algo.advantage == name
    dapo = read_yaml(Path(CONFIGS[0]).parent / "dapo.yaml").algo
    assert dapo.clip_high == 0.28 and dapo.dynamic_sampling and dapo.overlong_cache > 0


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("algo:\n  advantage: agpo_asym\n  clip_high: 0.28\ntrain:\n  steps: 7\n")
    cfg = load_config(y, ["--algo.clip-high", "0.3", "--optim.lr", "3e-4"])
    assert cfg.algo.advantage == "agpo_asym"  # YAML over the default
    assert cfg.algo.clip_high == 0.3  # flag over YAML
    assert cfg.train.steps == 7 and cfg.optim.lr == 3e-4
    assert cfg.train.group_size == RunConfig().train.group_size  # untouched default


def test_derived_sizes_are_properties():
    cfg = load_config(None, ["--train.prompts-per-step", "8", "--train.group-size", "4",
                             "--train.mini-batch-prompts", "2", "--train.epochs", "3",
                             "--train.steps", "5"])
    assert cfg.train.sequences_per_step == 32 and cfg.train.mini_batches_per_epoch == 4
    assert cfg.train.optimizer_steps == 5 * 3 * 4


def test_unknown_yaml_key_names_file_and_line(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("algo:\n  advantage: grpo\n  clip_hgh: 0.28\n")
    with pytest.raises(UserError, match=r"bad.yaml:3: algo.clip_hgh: unknown field"):
        read_yaml(y)


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--train.group-size", "1"], "--train.group-size"),
        (["--algo.advantage", "grpoo"], "--algo.advantage"),
        (["--algo.clip-low", "1.5"], "--algo.clip-low"),
        (["--algo.adaptive.tau-min", "2"], "--algo.adaptive.tau-base"),
        # AGPO-adaptive's τ is centred at τ_base: a different --rollout.temperature is refused,
        # not silently ignored (the probe of the adaptive clip alone samples at τ_base too)
        (["--algo.adaptive-temperature", "--rollout.temperature", "0.7"], "--algo.adaptive.tau-base"),
        (["--algo.adaptive-clip", "--algo.adaptive.tau-base", "0.8"], "--algo.adaptive.tau-base"),
        (["--optim.lr", "nan"], "--optim.lr"),
        (["--rollout.top-p", "0.9"], "--rollout.top-p"),
        (["--train.prompts-per-step", "6", "--train.mini-batch-prompts", "4"], "--train.mini-batch-prompts"),
        (["--algo.overlong-cache", "99", "--rollout.max-new-tokens", "8"], "--algo.overlong-cache"),
        (["--model.path", "/nonexistent/model"], "--model.path"),
        (["--algo.advantage", "passk_analytic", "--train.group-size", "4"], "--algo.adv.passk-k"),
    ],
)
def test_bad_config_fails_before_any_work_naming_the_flag(flags, named, seven_task, tmp_path):
    out = tmp_path / "run"
    # agpo's one-line UserError (a ConfigError from a section's check), also when the check runs
    # while tyro builds the section: not tyro's box of a ValueError.
    with pytest.raises(UserError) as err:
        main(["--out", str(out), "--task.spec", str(seven_task), "--reward.verifier", "exact",
              "--reward.workers", "0", *flags])
    assert named in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()  # nothing written: the same --out works once the flag is fixed


def test_bad_dataset_row_names_file_and_line(seven_model_dir, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "a", "prompt": "1+1=", "gold": "7"}\n{"id": "b", "prompt": \n')
    with pytest.raises(UserError, match=r"data.jsonl:2"):
        main(["--out", str(tmp_path / "run"), "--model.path", str(seven_model_dir),
              "--task.spec", str(data), "--reward.verifier", "exact", "--reward.workers", "0"])
