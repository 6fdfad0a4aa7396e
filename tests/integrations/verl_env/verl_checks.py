"""Checks that run inside verl's own environment (.venv-verl), not agpo's main one.

tests/integrations/test_verl.py builds the environment (scripts/verl_env.sh) and runs this file
there with pytest; the file name does not match ``test_*.py`` so the main suite never collects
it directly. Every check goes through verl's own entry points (its trainer's
``compute_advantage`` and its policy-loss registry) after agpo is loaded the way a verl run loads
it (``VERL_USE_EXTERNAL_MODULES``), and compares with agpo's functions called directly.
"""

from __future__ import annotations

import os

os.environ["VERL_USE_EXTERNAL_MODULES"] = "agpo.integrations.verl"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402  (importing verl loads agpo's module)
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402
from verl.workers.config import ActorConfig  # noqa: E402

from agpo.algos.advantages import ADVANTAGES, AdvantageConfig  # noqa: E402
from agpo.algos.aggregation import AGGREGATIONS, LossNorm  # noqa: E402
from agpo.algos.objectives import OBJECTIVES  # noqa: E402
from agpo.integrations.verl import POLICY_LOSS_NAME, VERL_NAMES  # noqa: E402

torch.set_num_threads(1)
SEEDS = range(5)


def _batch(seed: int, b: int = 6, g: int = 8, t: int = 12):
    """A verl batch whose rows are shuffled (as trainer.balance_batch does) + the truth [B, G].

    Scores are binary, mixed with all-right and all-wrong groups; each response's score sits on
    its last response token, as verl's reward managers place it.
    """
    gen = torch.Generator().manual_seed(seed)
    scores = (torch.rand(b, g, generator=gen) < torch.rand(b, 1, generator=gen)).float()
    scores[0] = 1.0
    scores[1] = 0.0
    lengths = torch.randint(1, t + 1, (b * g,), generator=gen)
    mask = (torch.arange(t) < lengths[:, None]).float()  # [N, T]
    rewards = torch.zeros(b * g, t)
    rewards[torch.arange(b * g), lengths - 1] = scores.flatten()
    uid = np.array([f"prompt-{i // g}" for i in range(b * g)], dtype=object)
    perm = torch.randperm(b * g, generator=gen)
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards[perm], "response_mask": mask[perm]},
        non_tensors={"uid": uid[perm.numpy()]},
    )
    return data, scores, mask, perm


def test_every_agpo_estimator_is_registered_in_verl():
    assert set(VERL_NAMES) == set(ADVANTAGES.names())
    for verl_name in VERL_NAMES.values():
        assert verl_name in core_algos.ADV_ESTIMATOR_REGISTRY
    # verl's own estimators are untouched.
    assert core_algos.get_adv_estimator_fn("grpo") is core_algos.compute_grpo_outcome_advantage
    assert POLICY_LOSS_NAME in core_algos.POLICY_LOSS_REGISTRY


@pytest.mark.parametrize("name", sorted(VERL_NAMES))
@pytest.mark.parametrize("seed", SEEDS)
def test_estimator_through_verl_trainer_equals_agpo(name, seed):
    data, scores, mask, perm = _batch(seed)
    algo = OmegaConf.create({"adv_estimator": VERL_NAMES[name], "gamma": 1.0, "lam": 1.0})
    out = compute_advantage(data, adv_estimator=VERL_NAMES[name], config=algo)
    expected = ADVANTAGES.get(name)(scores, AdvantageConfig()).advantages.flatten()  # [N]
    expected = (expected[:, None] * mask)[perm]  # [N, T], in verl's shuffled row order
    torch.testing.assert_close(out.batch["advantages"], expected, rtol=0, atol=0)
    torch.testing.assert_close(out.batch["returns"], expected, rtol=0, atol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_hyper_parameters_reach_the_estimator_through_verl_config(seed):
    data, scores, mask, perm = _batch(seed)
    knobs = {"asym_neg_const": -0.5, "asym_lambda_pos": 0.3, "asym_delta": 0.2}
    algo = OmegaConf.create({"adv_estimator": "agpo_asym", "agpo": knobs})
    out = compute_advantage(data, adv_estimator="agpo_asym", config=algo)
    expected = ADVANTAGES.get("agpo_asym")(scores, AdvantageConfig(**knobs)).advantages
    expected = (expected.flatten()[:, None] * mask)[perm]
    torch.testing.assert_close(out.batch["advantages"], expected, rtol=0, atol=0)


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_agpo_grpo_passk_equals_verls_own_grpo_passk(seed, norm, continuous):
    # Tang et al.'s best-of-group estimator ships in verl too: agpo's, registered as
    # agpo_grpo_passk, must give verl's numbers, with and without the std normalisation, on
    # binary scores (a group with exactly one correct response is forced in) and continuous ones
    # (with a tie for the best).
    data, scores, mask, perm = _batch(seed)
    gen = torch.Generator().manual_seed(100 + seed)
    if continuous:
        scores = torch.rand(scores.shape, generator=gen)
        scores[2, :2] = 2.0
    else:
        scores[2] = 0.0
        scores[2, 3] = 1.0
    n = scores.numel()
    rewards = torch.zeros_like(mask)
    rewards[torch.arange(n), mask.sum(1).long() - 1] = scores.flatten()
    data.batch["token_level_rewards"] = rewards[perm]
    verl_algo = OmegaConf.create({"adv_estimator": "grpo_passk", "norm_adv_by_std_in_grpo": norm})
    ours = OmegaConf.create({"adv_estimator": VERL_NAMES["grpo_passk"],
                             "agpo": {"passk_std_norm": norm}})
    theirs = compute_advantage(data, adv_estimator="grpo_passk", config=verl_algo).batch
    theirs = theirs["advantages"].clone()
    out = compute_advantage(data, adv_estimator=VERL_NAMES["grpo_passk"], config=ours)
    torch.testing.assert_close(out.batch["advantages"], theirs)
    assert theirs.abs().sum() > 0  # the forced group teaches: the comparison is not all zeros


def test_unknown_config_key_names_the_valid_ones():
    data, *_ = _batch(0)
    algo = OmegaConf.create({"agpo": {"beta_pso": 0.9}})
    with pytest.raises(ValueError, match="beta_pso.*valid keys:.*beta_pos"):
        compute_advantage(data, adv_estimator="asym_grpo", config=algo)


def _actor_config(**overrides) -> ActorConfig:
    kw = dict(strategy="fsdp", ppo_mini_batch_size=4, ppo_micro_batch_size_per_gpu=1, rollout_n=4)
    kw.update(clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.28)
    kw.update(overrides)
    return ActorConfig(**kw)


def _loss_inputs(seed: int, n: int = 16, t: int = 10):
    gen = torch.Generator().manual_seed(100 + seed)
    old = -torch.rand(n, t, generator=gen) * 3
    new = old + 0.3 * torch.randn(n, t, generator=gen)  # ratios well outside [0.8, 1.28]
    lengths = torch.randint(0, t + 1, (n,), generator=gen)  # includes empty responses
    mask = (torch.arange(t) < lengths[:, None]).float()
    adv = torch.randn(n, 1, generator=gen) * mask  # token-level, constant per response
    return old, new, adv, mask


VERL_TO_AGPO_AGG = {
    "token-mean": "token_mean",
    "seq-mean-token-mean": "seq_mean_token_mean",
    "seq-mean-token-sum": "seq_mean_token_sum",
}


@pytest.mark.parametrize("mode", sorted(VERL_TO_AGPO_AGG))
@pytest.mark.parametrize("seed", SEEDS)
def test_policy_loss_through_verl_registry_equals_agpo(mode, seed):
    old, new, adv, mask = _loss_inputs(seed)
    loss_fn = core_algos.get_policy_loss_fn(POLICY_LOSS_NAME)
    loss, metrics = loss_fn(old, new, adv, mask, loss_agg_mode=mode, config=_actor_config())

    n = mask.shape[0]
    per_token, stats = OBJECTIVES.get("ppo_clip")(
        new, old, adv[:, 0], mask, torch.full((n,), 0.2), torch.full((n,), 0.28)
    )
    expected = AGGREGATIONS.get(VERL_TO_AGPO_AGG[mode])(per_token, mask, LossNorm.from_mask(mask))
    torch.testing.assert_close(loss, expected)
    assert metrics["actor/pg_clipfrac_lower"] == pytest.approx(stats["clipfrac_low"].item())


@pytest.mark.parametrize("seed", SEEDS)
def test_policy_loss_equals_verl_vanilla_without_dual_clip(seed):
    # verl's vanilla adds a dual-clip bound (ratio ≤ clip_ratio_c) for negative advantages;
    # with that bound out of reach the two PPO-clip implementations must agree.
    old, new, adv, mask = _loss_inputs(seed)
    cfg = _actor_config(clip_ratio_c=1e9)
    args = (old, new, adv, mask, "token-mean", cfg)
    ours, _ = core_algos.get_policy_loss_fn(POLICY_LOSS_NAME)(*args)
    verls, _ = core_algos.get_policy_loss_fn("vanilla")(*args)
    torch.testing.assert_close(ours, verls)


@pytest.mark.parametrize("mode", sorted(VERL_TO_AGPO_AGG))
def test_policy_loss_is_invariant_to_micro_batches_and_ranks(mode):
    # Two data-parallel ranks × two micro-batches each, normalised by global counts the way
    # verl's ppo_loss fills config.global_batch_info. DDP averages gradients over ranks, so
    # the mini-batch loss is Σ_micro-batches loss / dp_size.
    old, new, adv, mask = _loss_inputs(7, n=16)
    loss_fn = core_algos.get_policy_loss_fn(POLICY_LOSS_NAME)
    whole, _ = loss_fn(old, new, adv, mask, mode, _actor_config())
    dp = 2
    cfg = _actor_config()
    cfg.global_batch_info.update(
        dp_size=dp,
        batch_num_tokens=mask.sum(),
        global_batch_size=(mask.sum(-1) > 0).sum(),
        loss_scale_factor=None,
    )
    parts = [
        loss_fn(old[s], new[s], adv[s], mask[s], mode, cfg)[0]
        for s in (slice(0, 3), slice(3, 8), slice(8, 13), slice(13, 16))
    ]
    torch.testing.assert_close(sum(parts) / dp, whole)


def test_documented_recipe_composes_and_validates_with_verl_config():
    # docs/verl.md's launch recipe: its overrides must compose with verl's own Hydra schema,
    # pass verl's validate_config, and reach agpo's estimator and loss as intended.
    import pathlib
    import subprocess

    import verl
    from hydra import compose, initialize_config_dir
    from verl.trainer.main_ppo import validate_config
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass

    from agpo.integrations.verl import advantage_config, clip_range

    root = pathlib.Path(__file__).resolve().parents[3]
    printed = subprocess.run(
        ["bash", str(root / "scripts" / "verl_agpo_asym_math.sh")],
        env={**os.environ, "AGPO_VERL_PRINT": "1", "MODEL_DIR": "/m", "DATA_DIR": "/d"},
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    config_dir = str(pathlib.Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=[o for o in printed if o])
    validate_config(
        config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg)
    )
    assert cfg.data.train_files == "/d/train.parquet"
    core_algos.get_adv_estimator_fn(cfg.algorithm.adv_estimator)
    assert advantage_config(cfg.algorithm) == AdvantageConfig(
        asym_lambda_pos=1.0, asym_gate=True, asym_neg_const=-1.0, asym_delta=0.1
    )
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    loss_fn = core_algos.get_policy_loss_fn(actor.policy_loss.loss_mode)
    assert loss_fn is core_algos.get_policy_loss_fn(POLICY_LOSS_NAME)
    assert clip_range(actor) == (0.2, 0.28)


def test_plugin_entry_point_loads_agpo_without_the_environment_variable():
    # pyproject.toml declares agpo under verl's "verl.plugins" entry points, so installing agpo
    # beside verl is enough: a fresh interpreter with no VERL_USE_EXTERNAL_MODULES finds it.
    import subprocess
    import sys

    probe = (
        "import verl\n"
        "from verl.trainer.ppo import core_algos as c\n"
        "print(sorted(set(c.ADV_ESTIMATOR_REGISTRY) & {'agpo_asym', 'asym_grpo', 'nsr'}))\n"
        "print(c.get_policy_loss_fn('" + POLICY_LOSS_NAME + "').__module__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "VERL_USE_EXTERNAL_MODULES"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, timeout=300, check=True).stdout.splitlines()
    assert out[-2] == "['agpo_asym', 'asym_grpo', 'nsr']"
    assert out[-1].startswith("agpo.integrations.verl")
