"""agpo's estimators inside TRL's GRPOTrainer (CPU, the conftest tiny model, a few steps)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from agpo.algos.advantages import ADVANTAGES, AdvantageConfig  # noqa: E402
from agpo.integrations.trl import (  # noqa: E402
    AgpoGRPOTrainer,
    check_trl_version,
    group_advantages,
)

G = 4  # completions per prompt


def test_group_advantages_hand_worked():
    # Two prompts, G = 4. Prompt 0 scores (1, 0, 0, NaN): the NaN counts as 0 for the group.
    # agpo_asym: μ = 0.25, σ² = 0.1875, sqrt(σ² + δ²) = sqrt(0.1975) = 0.444410;
    # correct: 0.75 / 0.444410 = 1.687631; incorrect: −0.25 / 0.444410 − 1 = −1.562544;
    # the NaN row → 0.
    # Prompt 1 scores (0, 0, 0, 0): z = 0, every response gets R = −1.
    scores = torch.tensor([1.0, 0.0, 0.0, float("nan"), 0.0, 0.0, 0.0, 0.0])
    out = group_advantages(scores, G, "agpo_asym", AdvantageConfig())
    expected = torch.tensor([1.687631, -1.562544, -1.562544, 0.0, -1.0, -1.0, -1.0, -1.0])
    torch.testing.assert_close(out.advantages, expected, rtol=0, atol=1e-5)
    assert out.keep.all()


def test_group_advantages_nsr_drops_correct_responses():
    out = group_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0]), G, "nsr", AdvantageConfig())
    assert out.keep.tolist() == [False, True, False, True]
    assert out.advantages.tolist() == [0.0, -1.0, 0.0, -1.0]


@pytest.mark.parametrize("name", ADVANTAGES.names())
def test_every_agpo_estimator_runs_on_trl_rows(name):
    # TRL's flat rows b·G + g, grouped [B, G], give the estimator's own output (k = 2 < G = 4
    # for passk_analytic)
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    cfg = AdvantageConfig(passk_k=2)
    out = group_advantages(scores, G, name, cfg)
    expected = ADVANTAGES.get(name)(scores.view(2, G), cfg)
    assert torch.equal(out.advantages, expected.advantages.flatten())
    assert torch.equal(out.keep, expected.keep.flatten())


def test_untested_trl_versions_fail_clearly():
    check_trl_version("1.16.3")
    with pytest.raises(RuntimeError, match=r"tested with TRL 1\.16\.x only; found TRL 0\.29\.1"):
        check_trl_version("0.29.1")


class _Recording(AgpoGRPOTrainer):
    """Records every step's agpo outputs and the advantages TRL's loss actually received."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps: list = []
        self.loss_advantages: list[torch.Tensor] = []
        self.loss_masks: list[torch.Tensor] = []

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.steps.append((self.agpo_last, output["advantages"].clone()))
        return output

    def _compute_loss(self, model, inputs):
        self.loss_advantages.append(inputs["advantages"].detach().clone())
        mask = inputs["completion_mask"] * inputs.get("tool_mask", 1)
        self.loss_masks.append(mask.detach().clone())
        return super()._compute_loss(model, inputs)


def _reward_has_seven(completions, **kwargs):
    """1 when the completion contains a '7': a random tiny model hits it in some samples only,
    so groups are mixed, all-right and all-wrong."""
    return [float("7" in c) for c in completions]


def _trainer(tmp_path, model_dir, tokenizer, advantage: str, max_steps: int) -> _Recording:
    prompts = Dataset.from_dict({"prompt": ["1+1=", "2+5=", "3*3=", "9-2="]})
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,  # 2 prompts × G completions per step
        num_generations=G,
        max_completion_length=8,
        max_steps=max_steps,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
        temperature=1.0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return _Recording(
        model=str(model_dir),
        processing_class=tokenizer,
        reward_funcs=_reward_has_seven,
        args=args,
        train_dataset=prompts,
        advantage=advantage,
    )


@pytest.mark.parametrize("advantage", ["agpo_asym", "nsr"])
def test_trl_trains_with_agpo_advantages(tmp_path, tiny_model_dir, tiny_tokenizer, advantage):
    torch.manual_seed(0)
    trainer = _trainer(tmp_path, tiny_model_dir, tiny_tokenizer, advantage, max_steps=3)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()

    assert len(trainer.steps) == 3
    estimator = ADVANTAGES.get(advantage)
    for step, handed_to_trl in trainer.steps:
        # The rewards TRL's reward step computed → agpo's estimator, exactly.
        expected = estimator(step.scores.view(-1, G), AdvantageConfig())
        torch.testing.assert_close(step.advantages, expected.advantages.flatten(), rtol=0, atol=0)
        torch.testing.assert_close(handed_to_trl, step.advantages, rtol=0, atol=0)
    # TRL shuffles rows before the loss; the multiset of advantages it trained on is agpo's.
    used = torch.cat(trainer.loss_advantages).sort().values
    handed = torch.cat([a for _, a in trainer.steps]).sort().values
    torch.testing.assert_close(used, handed, rtol=0, atol=0)
    # The reward is not constant across the run, or the check above would be vacuous.
    all_scores = torch.cat([s.scores for s, _ in trainer.steps])
    assert 0 < all_scores.sum() < all_scores.numel()
    if advantage == "nsr":
        # NSR drops correct responses (advantage 0): their tokens must leave TRL's loss mask.
        for adv, mask in zip(trainer.loss_advantages, trainer.loss_masks):
            assert torch.equal(adv == 0, mask.sum(-1) == 0)
        assert any((adv == 0).any() for adv in trainer.loss_advantages)
    changed = any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert changed
