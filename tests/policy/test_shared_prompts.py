"""A group's prompt runs once in the scoring and training forward (``response_states``) and in the
sampler's prefill: the same log-probs, entropy and gradients as running it in every row, for less
work."""

from __future__ import annotations

import pytest
import torch

from agpo.models import enable_activation_checkpointing
from agpo.policy import forward, prompt_cache, response_logprobs
from agpo.rollout import SamplingConfig, sample, sampler

PROMPTS = ["1+2=", "33+4=", "7*8=", "9="]  # different lengths: the prompts are left-padded
G = 3


@pytest.fixture
def groups(tiny_model, tiny_tokenizer):
    """G samples of each prompt, grouped, at different temperatures within a group."""
    prompts = [p for p in PROMPTS for _ in range(G)]
    temps = torch.tensor([0.7, 1.0, 1.3] * len(PROMPTS))
    cfg = SamplingConfig(max_new_tokens=6)
    return sample(tiny_model, tiny_tokenizer, prompts, temps, cfg, torch.Generator().manual_seed(5)).trim()


def _scored(model: torch.nn.Module, rows, share: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    lp, ent = response_logprobs(model, rows, rows.temperatures, share_prompts=share)
    (lp.sum() + 0.1 * ent.sum()).backward()
    return lp.detach(), ent.detach(), [p.grad.clone() for p in model.parameters()]


def _assert_same(a, b) -> None:
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=0)
    for x, y in zip(a[2], b[2], strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("path", ["decoder", "full_logits"])
def test_a_shared_prompt_gives_the_same_logprobs_entropy_and_gradients(tiny_model, groups, monkeypatch, path) -> None:
    if path == "full_logits":
        monkeypatch.setattr(forward, "split_head", lambda model: None)
    tiny_model.train()
    shared, plain = _scored(tiny_model, groups, True), _scored(tiny_model, groups, False)
    _assert_same(shared, plain)
    # ... and both are the log-probs the sampler recorded at each row's temperature.
    torch.testing.assert_close(shared[0], groups.logprobs * groups.response_mask, atol=1e-4, rtol=0)


def test_each_distinct_prompt_runs_once(tiny_model, groups) -> None:
    seen: list[tuple[int, int]] = []
    tiny_model.get_decoder().register_forward_hook(
        lambda module, args, kwargs, out: seen.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    with torch.no_grad():
        response_logprobs(tiny_model, groups, groups.temperatures)
    n, p = groups.prompt_ids.shape
    t = groups.response_ids.shape[1]
    # The prompts' first P-1 columns once per prompt, then each row's last prompt token + response.
    assert seen == [(len(PROMPTS), p - 1), (n, t)]
    seen.clear()
    with torch.no_grad():
        response_logprobs(tiny_model, groups, groups.temperatures, share_prompts=False)
    assert seen == [(n, p + t)]


def test_rows_without_a_repeated_prompt_run_in_one_forward(tiny_model, groups) -> None:
    seen: list[int] = []
    tiny_model.get_decoder().register_forward_hook(lambda *args: seen.append(1))
    distinct = groups.select(list(range(0, groups.num_sequences, G)))  # one row per prompt
    with torch.no_grad():
        response_logprobs(tiny_model, distinct, distinct.temperatures)
    assert len(seen) == 1


def test_the_same_prompt_ids_with_another_mask_are_another_prompt() -> None:
    # Row 0's leading 0 is padding, row 1's is a real token (pad id == a real id, as with pad = EOS).
    ids = torch.tensor([[0, 5, 6], [0, 5, 6], [0, 5, 6], [7, 5, 6]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1], [0, 1, 1], [1, 1, 1]])
    first, inverse = prompt_cache.distinct_prompts(ids, mask)
    assert first.numel() == 3
    assert torch.equal(first[inverse], torch.tensor([0, 1, 0, 3]))  # each row → the first row like it
    assert prompt_cache.distinct_prompts(ids[1:], mask[1:]) is None  # nothing repeats


def test_gradient_checkpointing_runs_every_row_whole_and_stays_right(tiny_model, groups) -> None:
    # transformers drops the KV cache under gradient checkpointing in training: no sharing then.
    tiny_model.train()
    want = _scored(tiny_model, groups, False)
    enable_activation_checkpointing(tiny_model)
    seen: list[int] = []
    tiny_model.get_decoder().register_forward_hook(lambda *args: seen.append(1))
    _assert_same(_scored(tiny_model, groups, True), want)
    assert len(seen) == 1


class _IgnoresAGivenCache(torch.nn.Module):
    """A decoder that starts a cache of its own instead of reading the one it is given."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        super().__init__()
        self.decoder, self.config = decoder, decoder.config

    def forward(self, **kwargs):  # noqa: ANN003, ANN201
        kwargs.pop(prompt_cache.CACHE, None)
        return self.decoder(**kwargs)


class _NeverCaches(_IgnoresAGivenCache):
    """A decoder that returns no KV cache at all."""

    def forward(self, **kwargs):  # noqa: ANN003, ANN201
        return super().forward(**{**kwargs, "use_cache": False})


@pytest.mark.parametrize("wrapper", [_IgnoresAGivenCache, _NeverCaches])
def test_a_model_that_does_not_serve_the_prompt_cache_runs_the_rows_whole(tiny_model, groups, monkeypatch,
                                                                         wrapper) -> None:
    tiny_model.train()
    want = _scored(tiny_model, groups, False)
    decoder, head = forward.split_head(tiny_model)
    monkeypatch.setattr(forward, "split_head", lambda model: (wrapper(decoder), head))
    _assert_same(_scored(tiny_model, groups, True), want)


def test_the_sampler_prefills_a_repeated_prompt_once(tiny_model, tiny_tokenizer, monkeypatch) -> None:
    prompts = [p for p in PROMPTS for _ in range(G)]
    temps = torch.tensor([0.7, 1.0, 1.3] * len(PROMPTS))
    cfg = SamplingConfig(max_new_tokens=6)
    rows: list[int] = []
    tiny_model.register_forward_hook(lambda module, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]),
                                     with_kwargs=True)
    shared = sample(tiny_model, tiny_tokenizer, prompts, temps, cfg, torch.Generator().manual_seed(5))
    assert rows[0] == len(PROMPTS) and rows[1] == len(prompts)  # the prefill, then the first decode step
    monkeypatch.setattr(sampler, "distinct_prompts", lambda ids, mask: None)
    whole = sample(tiny_model, tiny_tokenizer, prompts, temps, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(shared.response_ids, whole.response_ids) and shared.texts == whole.texts
    # A forward over fewer rows rounds differently (BLAS blocking), nothing more.
    torch.testing.assert_close(shared.logprobs, whole.logprobs, atol=1e-6, rtol=0)
