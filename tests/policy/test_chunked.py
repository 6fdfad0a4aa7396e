"""Chunked log-probs and entropy: the same values (and gradients) as the full-vocabulary logits,
with only [chunk, V] logits alive at a time."""

from __future__ import annotations

import math

import pytest
import torch

from agpo.ops import chunked_logprobs_entropy, entropy_from_logits, logprobs_from_logits
from agpo.policy import forward
from agpo.policy.forward import response_logits, response_logprobs
from agpo.rollout import SamplingConfig, sample


def test_hand_worked_two_token_vocabulary() -> None:
    # The head is the identity: logits = hidden. Row 0: z = (0, ln 3) → p = (1/4, 3/4);
    # log p(1) = ln 3/4 = −0.28768; H = −(¼ ln ¼ + ¾ ln ¾) = 0.34657 + 0.21576 = 0.56233.
    # Row 1 at τ = 2: z/τ = (0, ln √3) → p = (1/(1+√3), √3/(1+√3)) = (0.36603, 0.63397);
    # log p(0) = −1.00505; H = 0.36603·1.00505 + 0.63397·0.45575 = 0.65681.
    hidden = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)]])
    lp, ent = chunked_logprobs_entropy(lambda h: h, hidden, torch.tensor([1, 0]),
                                       torch.tensor([1.0, 2.0]), chunk=1)
    torch.testing.assert_close(lp, torch.tensor([-0.28768, -1.00505]), atol=1e-5, rtol=0)
    torch.testing.assert_close(ent, torch.tensor([0.56233, 0.65681]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_any_chunk_equals_the_full_logits_values_and_gradients(chunk: int) -> None:
    g = torch.Generator().manual_seed(0)
    m, h, v = 50, 16, 300  # 50 tokens: chunks of 7 leave a short last chunk
    head = torch.nn.Linear(h, v, bias=False)
    hidden = torch.randn(m, h, generator=g, requires_grad=True)
    ids = torch.randint(0, v, (m,), generator=g)
    tau = torch.rand(m, generator=g) + 0.5
    weights = torch.randn(m, generator=g)

    logits = head(hidden) / tau.unsqueeze(-1)  # [M, V] the plain way
    want_lp, want_ent = logprobs_from_logits(logits, ids), entropy_from_logits(logits)
    (want_lp * weights + want_ent).sum().backward()
    want_grads = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None

    lp, ent = chunked_logprobs_entropy(head, hidden, ids, tau, chunk=chunk)
    (lp * weights + ent).sum().backward()
    # Same formulas; only the head's matmul over fewer rows may round differently (≤ 2 ulp).
    torch.testing.assert_close(lp, want_lp, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ent, want_ent, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(hidden.grad, want_grads[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(head.weight.grad, want_grads[1], atol=1e-6, rtol=1e-5)


def test_empty_input_is_empty() -> None:
    lp, ent = chunked_logprobs_entropy(lambda h: h, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert lp.shape == ent.shape == (0,)


@pytest.fixture
def rollout(tiny_model, tiny_tokenizer):
    prompts = ["1+2=", "33+4=", "7*8=", "9="] * 2
    temps = torch.tensor([1.0, 0.7, 1.3, 1.0] * 2)
    cfg = SamplingConfig(max_new_tokens=6, batch_size=8)
    return sample(tiny_model, tiny_tokenizer, prompts, temps, cfg, torch.Generator().manual_seed(3))


def test_scoring_in_chunks_equals_scoring_through_full_logits(tiny_model, rollout, monkeypatch) -> None:
    temps = rollout.temperatures
    with torch.no_grad():
        chunked = response_logprobs(tiny_model, rollout, temps, chunk=5)
        one_chunk = response_logprobs(tiny_model, rollout, temps, chunk=10_000)
        monkeypatch.setattr(forward, "split_head", lambda model: None)  # the full-logits path
        full = response_logprobs(tiny_model, rollout, temps)
    for a, b, c in zip(chunked, one_chunk, full, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=0)
    # ... and both equal what the sampler recorded at each row's temperature.
    torch.testing.assert_close(chunked[0], rollout.logprobs, atol=1e-4, rtol=0)


def test_the_training_gradient_is_the_full_logits_gradient(tiny_model, rollout, monkeypatch) -> None:
    rows = rollout.trim()

    def grads() -> list[torch.Tensor]:
        tiny_model.zero_grad()
        lp, ent = response_logprobs(tiny_model, rows, rows.temperatures, chunk=4)
        (lp.sum() + 0.1 * ent.sum()).backward()
        return [p.grad.clone() for p in tiny_model.parameters()]

    tiny_model.train()
    chunked = grads()
    monkeypatch.setattr(forward, "split_head", lambda model: None)
    full = grads()
    for a, b in zip(chunked, full, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_no_logits_tensor_of_the_whole_batch_is_built(tiny_model, rollout, monkeypatch) -> None:
    # The head sees at most `chunk` tokens per call; the full-logits forward is never called.
    seen: list[int] = []
    decoder, head = forward.split_head(tiny_model)
    monkeypatch.setattr(forward, "split_head", lambda model: (decoder, lambda h: seen.append(h.shape[0]) or head(h)))
    monkeypatch.setattr(forward, "response_logits", None)
    with torch.no_grad():
        response_logprobs(tiny_model, rollout, rollout.temperatures, chunk=5)
    width = rollout.trim().response_ids.shape[1]
    assert max(seen) == 5 and sum(seen) == rollout.num_sequences * width


def test_response_logits_path_still_serves_models_with_a_logit_scale(tiny_model) -> None:
    tiny_model.config.logit_scale = 0.5  # Cohere-style: agpo does not rebuild such a head
    assert forward.split_head(tiny_model) is None
    assert callable(response_logits)
