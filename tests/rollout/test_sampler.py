"""agpo's sampler (the transformers engine): sampling log-probs equal re-scoring, EOS handling,
left padding, top-p, decode batches."""

from __future__ import annotations

import pytest
import torch

from agpo.errors import UserError
from agpo.policy import token_logprobs
from agpo.rollout import SamplingConfig, sample
from agpo.types import Rollout

PROMPTS = ["12+34=", "7=", "abc+defgh=", "0"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sampling_logprobs_equal_rescoring_at_each_rows_temperature(tiny_model, tiny_tokenizer):
    temps = torch.tensor([0.5, 1.0, 1.5, 0.8] * 2)
    r = sample(tiny_model, tiny_tokenizer, PROMPTS * 2, temps, SamplingConfig(max_new_tokens=12), _gen())
    logprobs, entropy = token_logprobs(tiny_model, r, r.temperatures, micro_batch=3)
    assert torch.allclose(logprobs, r.logprobs, atol=1e-5)
    # A different temperature is a different distribution: the ratio would not be 1.
    other, _ = token_logprobs(tiny_model, r, torch.ones(8), micro_batch=8)
    assert not torch.allclose(other, r.logprobs, atol=1e-3)
    assert (entropy[r.response_mask == 0] == 0).all() and (entropy[r.response_mask == 1] > 0).all()


def test_rows_stop_at_their_first_eos_which_is_kept_in_the_mask(tiny_model, tiny_tokenizer):
    # Make frequent characters end a response so that both outcomes occur within 10 tokens.
    stops = [tiny_tokenizer.eos_token_id] + tiny_tokenizer.convert_tokens_to_ids(list("0123456789abc"))
    tiny_model.generation_config.eos_token_id = stops
    r = sample(tiny_model, tiny_tokenizer, PROMPTS * 8, torch.ones(32), SamplingConfig(max_new_tokens=10), _gen(1))
    lengths = r.response_mask.sum(-1)
    assert r.truncated.any() and (~r.truncated).any()
    for row, mask, n, cut in zip(r.response_ids, r.response_mask, lengths, r.truncated):
        assert mask[:n].all() and not mask[n:].any()  # a prefix
        is_stop = torch.isin(row[:n], torch.tensor(stops))
        if cut:
            assert n == 10 and not is_stop.any()
        else:
            assert is_stop[-1] and not is_stop[:-1].any()
        assert (row[n:] == tiny_tokenizer.pad_token_id).all()
    assert r.num_generated_tokens == int(lengths.sum())


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_finished_rows_leave_the_decode_batch_and_the_samples_stay_the_same(tiny_model, tiny_tokenizer,
                                                                            monkeypatch, top_p):
    from transformers.cache_utils import Cache, DynamicLayer

    stops = [tiny_tokenizer.eos_token_id] + tiny_tokenizer.convert_tokens_to_ids(list("0123456789abc"))
    tiny_model.generation_config.eos_token_id = stops  # lengths from 1 to 16
    temps = torch.tensor([0.5, 1.0, 1.5, 0.8] * 6)
    cfg = SamplingConfig(max_new_tokens=16, top_p=top_p)
    calls: list[int] = []
    select_rows = Cache.batch_select_indices
    monkeypatch.setattr(Cache, "batch_select_indices",
                        lambda self, idx: (calls.append(len(idx)), select_rows(self, idx))[1])
    compacted = sample(tiny_model, tiny_tokenizer, PROMPTS * 6, temps, cfg, _gen(3))
    assert calls and calls[-1] < 24 / 4  # rows did leave, more than once
    monkeypatch.delattr(DynamicLayer, "batch_select_indices")  # the full batch to the end
    calls.clear()
    full = sample(tiny_model, tiny_tokenizer, PROMPTS * 6, temps, cfg, _gen(3))
    assert not calls
    for field in ("response_ids", "response_mask", "truncated"):
        assert torch.equal(getattr(compacted, field), getattr(full, field)), field
    assert compacted.texts == full.texts
    # A forward over fewer rows rounds differently (BLAS blocking), nothing more.
    assert torch.allclose(compacted.logprobs, full.logprobs, atol=1e-6, rtol=0)
    lengths = full.response_mask.sum(-1)
    assert lengths.min() < 4 and lengths.max() == 16
    rescored, _ = token_logprobs(tiny_model, compacted, compacted.temperatures, micro_batch=24)
    assert torch.allclose(rescored, compacted.logprobs, atol=1e-5)


def test_rollouts_and_scores_are_ordinary_tensors_that_autograd_accepts(tiny_model, tiny_tokenizer):
    # Sampling and scoring run under inference_mode; what they return must still enter a loss.
    r = sample(tiny_model, tiny_tokenizer, PROMPTS, torch.ones(4), SamplingConfig(max_new_tokens=5), _gen())
    logprobs, entropy = token_logprobs(tiny_model, r, r.temperatures, micro_batch=4)
    tensors = [r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask, r.logprobs, r.temperatures,
               r.truncated, logprobs, entropy]
    assert not any(t.is_inference() for t in tensors)
    w = torch.ones(1, requires_grad=True)
    (w * r.logprobs * r.response_mask).sum().backward()  # saves both for backward
    assert w.grad is not None


def test_left_padding_does_not_change_a_rows_distribution(tiny_model, tiny_tokenizer):
    r = sample(tiny_model, tiny_tokenizer, PROMPTS, torch.ones(4), SamplingConfig(max_new_tokens=8), _gen())
    assert tiny_tokenizer.padding_side == "left"
    batched, _ = token_logprobs(tiny_model, r, r.temperatures, micro_batch=4)
    for i, prompt in enumerate(PROMPTS):
        alone = r.select([i])
        p = int(alone.prompt_mask.sum())  # strip this row's padding
        alone.prompt_ids, alone.prompt_mask = alone.prompt_ids[:, -p:], alone.prompt_mask[:, -p:]
        lp, _ = token_logprobs(tiny_model, alone, alone.temperatures, micro_batch=1)
        assert torch.allclose(lp, batched[i : i + 1], atol=1e-5), prompt


def test_same_generator_seed_same_rollout_and_texts_skip_special_tokens(tiny_model, tiny_tokenizer):
    cfg = SamplingConfig(max_new_tokens=6)
    a = sample(tiny_model, tiny_tokenizer, PROMPTS, torch.ones(4), cfg, _gen(3))
    b = sample(tiny_model, tiny_tokenizer, PROMPTS, torch.ones(4), cfg, _gen(3))
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    for text in a.texts:
        assert "<pad>" not in text and "</s>" not in text


def test_tiny_top_p_is_greedy_and_decode_batches_concatenate(tiny_model, tiny_tokenizer):
    greedy = SamplingConfig(max_new_tokens=6, top_p=1e-6)
    whole = sample(tiny_model, tiny_tokenizer, PROMPTS, torch.ones(4), greedy, _gen(0))
    chunked = sample(tiny_model, tiny_tokenizer, PROMPTS, torch.ones(4),
                     SamplingConfig(max_new_tokens=6, top_p=1e-6, batch_size=3), _gen(1))
    assert whole.texts == chunked.texts
    lp, _ = token_logprobs(tiny_model, chunked, chunked.temperatures, micro_batch=2)
    assert torch.allclose(lp, chunked.logprobs, atol=1e-5)
    both = Rollout.concat([whole, chunked], tiny_tokenizer.pad_token_id)
    assert both.num_sequences == 8 and both.texts[:4] == both.texts[4:]


@pytest.mark.parametrize(
    "kwargs, flag",
    [({"max_new_tokens": 0}, "--rollout.max-new-tokens"), ({"top_p": 0.0}, "--rollout.top-p"),
     ({"temperature": 0.0}, "--rollout.temperature"), ({"batch_size": 0}, "--rollout.batch-size")],
)
def test_bad_sampling_config_names_the_flag(kwargs, flag):
    with pytest.raises(UserError, match=flag):
        SamplingConfig(**kwargs)
