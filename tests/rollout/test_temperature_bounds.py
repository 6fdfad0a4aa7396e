"""Issue #24.3, training side: a temperature outside float32's range is refused with one line
naming the flag and the range (config and sampler alike), the range's ends sample finite
log-probs, and no NaN reaches the JSON training writes."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agpo.cli import main as agpo
from agpo.configs import ConfigError
from agpo.rollout import SamplingConfig, sample
from agpo.policy import token_logprobs
from agpo.rollout.sampler import TEMPERATURE_RANGE, sampling_progress
from agpo.train.metrics import write_samples
from agpo.types import RewardResult, Rollout, TaskItem

OUTSIDE = [1e-45, 1e-31, 1e31, 1e300, math.inf, math.nan, 0.0, -1.0]


@pytest.mark.parametrize("tau", OUTSIDE)
def test_sampling_config_refuses_a_temperature_outside_the_range(tau):
    with pytest.raises(ConfigError, match=r"--rollout.temperature: .* outside \[1e-30, 1e\+30\]"):
        SamplingConfig(temperature=tau)


@pytest.mark.parametrize("tau", [*TEMPERATURE_RANGE, 1e-3, 1.0])
def test_the_ends_of_the_range_sample_finite_logprobs(tau, tiny_model, tiny_tokenizer):
    cfg = SamplingConfig(temperature=tau, max_new_tokens=6)
    r = sample(tiny_model, tiny_tokenizer, ["12+34="] * 4, torch.full((4,), tau), cfg,
               torch.Generator().manual_seed(0))
    assert torch.isfinite(r.logprobs).all() and (r.response_mask.sum(-1) >= 1).all()


@pytest.mark.parametrize("tau", [1e-45, 1e31, math.nan])
def test_the_sampler_refuses_a_temperature_it_cannot_divide_by(tau, tiny_model, tiny_tokenizer):
    # A library caller bypasses the config: before, 1e-45 sampled NaN log-probs and empty texts.
    temps = torch.tensor([1.0, tau])
    with pytest.raises(ValueError, match="outside"):
        sample(tiny_model, tiny_tokenizer, ["1=", "2="], temps, SamplingConfig(max_new_tokens=3))


@pytest.mark.parametrize("tau", ["1e-45", "1e300"])
def test_agpo_train_refuses_it_in_one_line_and_writes_nothing(tau, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = agpo(["train", "--out", str(out), "--model.path", str(tiny_model_dir), "--task.spec", "arith",
                 "--rollout.temperature", tau, "--log.no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "--rollout.temperature" in err and "[1e-30, 1e+30]" in err
    assert not out.exists()


def test_samples_jsonl_holds_no_bare_nan(tmp_path):
    items = [TaskItem(id="p0", prompt="1+1=", gold="2")]
    rollout = Rollout(
        prompt_ids=torch.ones(2, 2, dtype=torch.long), prompt_mask=torch.ones(2, 2, dtype=torch.long),
        response_ids=torch.ones(2, 1, dtype=torch.long), response_mask=torch.ones(2, 1, dtype=torch.long),
        logprobs=torch.zeros(2, 1), temperatures=torch.ones(2), truncated=torch.zeros(2, dtype=torch.bool),
        texts=["2", "3"],
    )
    results = [RewardResult(score=math.nan, parsed="2"), RewardResult(score=0.0, parsed="3")]
    path = tmp_path / "step_1.jsonl"
    write_samples(path, items, rollout, results, torch.tensor([math.nan, -math.inf]), groups=1)
    rows = [json.loads(line, parse_constant=_refuse) for line in path.read_text().splitlines()]
    assert rows[0]["score"] is None and rows[0]["advantage"] is None and rows[1]["advantage"] is None


def _refuse(name: str) -> None:
    raise AssertionError(f"bare {name} in JSON")


def test_sampling_progress_reports_rows_and_tokens_without_changing_samples(tiny_model, tiny_tokenizer):
    cfg = SamplingConfig(max_new_tokens=5, batch_size=3)
    prompts, temps = ["12+34=", "7=", "0"] * 2, torch.ones(6)
    plain = sample(tiny_model, tiny_tokenizer, prompts, temps, cfg, torch.Generator().manual_seed(0))
    seen = []
    with sampling_progress(seen.append):
        shown = sample(tiny_model, tiny_tokenizer, prompts, temps, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(plain.response_ids, shown.response_ids) and torch.equal(plain.logprobs, shown.logprobs)
    assert seen and all(p.rows == 6 and p.max_tokens == 5 and 1 <= p.token <= 5 for p in seen)
    done = [p.rows_done for p in seen]
    assert done == sorted(done) and done[-1] == 6 and 3 in done  # two decode batches of 3 rows
    sample(tiny_model, tiny_tokenizer, prompts[:1], temps[:1], cfg)
    assert len(seen) == len(done)  # outside the context nothing is reported


@pytest.mark.parametrize("tau", [1e-45, 1e31, math.nan])
def test_the_scoring_forward_refuses_a_temperature_it_cannot_divide_by(tau, tiny_model, tiny_tokenizer):
    r = sample(tiny_model, tiny_tokenizer, ["1=", "2="], torch.ones(2), SamplingConfig(max_new_tokens=3))
    with pytest.raises(ValueError, match="outside"):
        token_logprobs(tiny_model, r, torch.tensor([1.0, tau]), micro_batch=2)
