"""AGPO-adaptive's running state on the training side (agpo.train.control): the controllers'
commits, their checkpoint state, and the strategies the sampler and the loop ask for τ and ε —
which read the state of the step start and commit once."""

from __future__ import annotations

import json

import pytest
import torch

from agpo.algos.config import AlgoConfig
from agpo.algos.controllers import AdaptiveConfig, ProbeStats
from agpo.train.config import RunConfig
from agpo.train.control import (
    AdaptiveClip,
    AdaptiveTemperature,
    ClipController,
    Control,
    FixedClip,
    FixedTemperature,
    StepKLTracker,
    TemperatureController,
)


def _quiet_probe(b: int) -> ProbeStats:
    """Probe statistics of b prompts without any signal (σ̂ = κ = E = U = 0)."""
    return ProbeStats(*(torch.zeros(b),) * 4)


def _gather(per_group: torch.Tensor) -> list[float]:
    return per_group.flatten().tolist()  # one process: its own values, in prompt order


# --- controllers ---------------------------------------------------------------------------------


def test_the_temperature_controller_reads_its_baseline_and_commits_in_prompt_order():
    # docs/methods.md §6: U = 2, ū = 1, α = 0.25, λ_T = 0.2 → τ = 1.2, then ū' = 1.25
    ctrl = TemperatureController(AdaptiveConfig(tau_base=1.0, lambda_t=0.2, alpha=0.25))
    ctrl.load_state_dict({"baseline": 1.0})
    u = torch.tensor([2.0])
    assert ctrl.temperatures(u).item() == pytest.approx(1.2)
    ctrl.update(u)
    assert ctrl.value == pytest.approx(1.25)
    fresh = TemperatureController(AdaptiveConfig(alpha=0.25))
    fresh.update([2.0, 3.0])  # the first value sets ū, the second is folded in: 2.25
    assert fresh.value == pytest.approx(2.25)


def test_the_clip_controller_reads_h_ref_and_commits_it():
    ctrl = ClipController(AdaptiveConfig(zeta=0.2))
    ctrl.load_state_dict({"h_ref": 2.0})
    probe = ProbeStats(dispersion=torch.tensor([0.4]), skewness=torch.tensor([-0.3]),
                       vote_entropy=torch.tensor([0.7]), uncertainty=torch.zeros(1))
    eps = ctrl.epsilons(torch.tensor([3.0]), probe, 0.2)
    assert eps.item() == pytest.approx(0.2 * 1.5 * 1.07 / 1.56)
    ctrl = ClipController()
    ctrl.update(torch.tensor([1.0, 4.0, 0.1]))  # 1, then 0.01·4 + 0.99·1, then 0.01·0.1 + 0.99·1.03
    assert ctrl.value == pytest.approx(1.0207)


def test_step_kl_tracker_commits_once_per_step():
    kl = StepKLTracker(AdaptiveConfig(kl_alpha=0.1))
    kl.observe(torch.tensor(0.2))
    kl.observe(torch.tensor(0.4))
    assert kl.value == 0.0  # nothing committed mid-step
    kl.update()  # 0.1·mean(0.2, 0.4) + 0.9·0 = 0.03
    assert kl.value == pytest.approx(0.03)
    kl.update()  # a step with no observation leaves it alone
    assert kl.value == pytest.approx(0.03)
    assert StepKLTracker(AdaptiveConfig(kl_alpha=0.5)).alpha == 0.5


def test_state_dicts_are_json_and_round_trip():
    t, c, k = TemperatureController(), ClipController(), StepKLTracker()
    t.update([0.5, 0.7])
    c.update([1.2])
    k.observe(torch.tensor(0.3))
    k.update()
    for ctrl, fresh in ((t, TemperatureController()), (c, ClipController()), (k, StepKLTracker())):
        fresh.load_state_dict(json.loads(json.dumps(ctrl.state_dict())))
        assert fresh.value == ctrl.value


# --- strategies ----------------------------------------------------------------------------------


def test_fixed_strategies_ignore_the_probe_but_track_its_baseline():
    ctrl = TemperatureController()
    fixed = FixedTemperature(0.7, ctrl)
    assert not fixed.needs_probe and fixed.temperatures(None, 3).tolist() == pytest.approx([0.7] * 3)
    fixed.commit(None, _gather)  # no probe: nothing to fold
    assert ctrl.value is None
    probe = ProbeStats(*(torch.zeros(2),) * 3, torch.tensor([0.5, 0.7]))
    fixed.commit(probe, _gather)  # a probe sampled for the adaptive clip still moves ū
    assert ctrl.value == pytest.approx(0.1 * 0.7 + 0.9 * 0.5)
    clip = FixedClip(0.2, 0.28)
    eps = clip.epsilons(None, torch.ones(4, 3), None)
    assert eps.low.tolist() == pytest.approx([0.2] * 4) and eps.high.tolist() == pytest.approx([0.28] * 4)
    assert eps.group_entropy is None and not (clip.needs_probe or clip.needs_drift)


def test_adaptive_strategies_read_the_state_of_the_step_start_and_commit_once():
    cfg = AdaptiveConfig(lambda_t=0.2, alpha=0.25)
    temperature = AdaptiveTemperature(TemperatureController(cfg))
    temperature.controller.load_state_dict({"baseline": 1.0})
    probe = ProbeStats(*(torch.zeros(1),) * 3, torch.tensor([2.0]))
    assert temperature.temperatures(probe, 1).item() == pytest.approx(1.2)
    temperature.commit(probe, _gather)
    assert temperature.controller.value == pytest.approx(1.25)
    # clip: G = 2, both groups' π_old entropy 1 (H_ref unset → h = 1): ε = ε_base on all 4 rows
    clip = AdaptiveClip(ClipController(cfg), StepKLTracker(cfg), group_size=2)
    eps = clip.epsilons(torch.ones(4, 3), torch.ones(4, 3), _quiet_probe(2))
    assert eps.low.tolist() == pytest.approx([0.2] * 4) and torch.equal(eps.low, eps.high)
    clip.commit(eps, torch.tensor([0.5]), _gather)  # H_ref ← 1; KL̄ ← 0.1·0.5
    assert clip.controller.value == pytest.approx(1.0) and clip.step_kl.value == pytest.approx(0.05)


def test_commit_folds_the_entropies_of_the_epsilons_it_is_given():
    # epsilons() returns what commit() needs: asking for ε twice (a probe run, a retry) does not
    # change what the step commits. G = 1, one group: H = 2 in the step's ε, then H = 5 asked after.
    clip = AdaptiveClip(ClipController(), StepKLTracker(), group_size=1)
    step = clip.epsilons(torch.full((1, 3), 2.0), torch.ones(1, 3), _quiet_probe(1))
    clip.epsilons(torch.full((1, 3), 5.0), torch.ones(1, 3), _quiet_probe(1))
    clip.commit(step, torch.tensor([0.0]), _gather)
    assert clip.controller.value == pytest.approx(2.0)  # the first H sets H_ref


def test_control_builds_the_strategies_of_the_flags_and_checkpoints_all_three_controllers():
    fixed = Control.build(RunConfig())
    assert isinstance(fixed.temperature, FixedTemperature) and isinstance(fixed.clip, FixedClip)
    assert not fixed.needs_probe
    adaptive = Control.build(RunConfig(algo=AlgoConfig(adaptive_clip=True, adaptive_temperature=True)))
    assert isinstance(adaptive.temperature, AdaptiveTemperature) and isinstance(adaptive.clip, AdaptiveClip)
    assert adaptive.needs_probe
    probe = ProbeStats(*(torch.zeros(8),) * 3, torch.full((8,), 0.5))
    eps = adaptive.clip.epsilons(torch.ones(64, 2), torch.ones(64, 2), probe)
    adaptive.commit(probe, eps, torch.tensor([0.1]), _gather)
    state = json.loads(json.dumps(adaptive.state_dict()))
    assert set(state) == {"temperature", "clip", "step_kl"}  # the checkpoint format
    assert adaptive.metrics() == {"ctrl/step_kl": pytest.approx(0.01), "ctrl/u_baseline": 0.5, "ctrl/h_ref": 1.0}
    fixed.load_state_dict(state)  # the same format whatever the strategies
    assert fixed.metrics() == adaptive.metrics()
