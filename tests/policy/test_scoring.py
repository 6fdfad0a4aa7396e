"""No-grad scoring of a rollout (``token_logprobs``): micro-batches by rows and by padded
tokens, and the columns that are padding in every row dropped, all without changing a score."""

from __future__ import annotations

import torch

from agpo.ops import logprobs_from_logits
from agpo.policy import micro_batches, token_logprobs
from agpo.policy.forward import response_logits
from agpo.rollout import SamplingConfig, sample
from agpo.types import Rollout

PROMPTS = ["12+34=", "7=", "abc+defgh=", "0"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rows_of_lengths(prompt: list[int], response: list[int]) -> Rollout:
    n, p, t = len(prompt), max(prompt), max(response)
    prompt_mask = torch.stack([torch.arange(p) >= p - k for k in prompt]).long()  # left padding
    response_mask = torch.stack([torch.arange(t) < k for k in response]).long()
    return Rollout(prompt_ids=prompt_mask.clone(), prompt_mask=prompt_mask, response_ids=response_mask.clone(),
                   response_mask=response_mask, logprobs=torch.zeros(n, t), temperatures=torch.ones(n),
                   truncated=torch.zeros(n, dtype=torch.bool), texts=[""] * n)


def test_micro_batches_hold_at_most_max_rows_and_max_padded_tokens():
    rows = _rows_of_lengths([2, 3, 2, 2, 4, 2], [3, 2, 9, 1, 1, 20])
    index = torch.arange(6)
    assert [m.tolist() for m in micro_batches(index, rows, max_rows=4)] == [[0, 1, 2, 3], [4, 5]]
    # Padded cost of a run: rows × (longest prompt + longest response).
    got = [m.tolist() for m in micro_batches(index, rows, max_rows=4, max_tokens=12)]
    assert got == [[0, 1], [2], [3, 4], [5]]  # 2×(3+3)=12 · 1×11 · 2×(4+1)=10 · 22 alone (over the cap)
    got = [m.tolist() for m in micro_batches(torch.tensor([3, 1, 0]), rows, max_rows=2, max_tokens=100)]
    assert got == [[3, 1], [0]]  # the order given is kept; max_rows still applies


def test_token_capped_scoring_equals_row_capped_scoring(tiny_model, tiny_tokenizer):
    r = sample(tiny_model, tiny_tokenizer, PROMPTS * 3, torch.ones(12), SamplingConfig(max_new_tokens=9), _gen(4))
    rows_only, ent = token_logprobs(tiny_model, r, r.temperatures, micro_batch=12)
    capped, ent_capped = token_logprobs(tiny_model, r, r.temperatures, micro_batch=12, max_tokens=30)
    assert len(micro_batches(torch.arange(12), r, 12, 30)) > 2
    assert torch.allclose(rows_only, capped, atol=1e-5) and torch.allclose(ent, ent_capped, atol=1e-5)


def test_trimming_all_padding_columns_changes_no_logprob(tiny_model, tiny_tokenizer):
    # The batch is padded to "abc+defgh=" (10 chars): the rows of "7=" alone have 10 - 2 = 8
    # leading columns of padding in every row. Digits end a response; keeping the "7=" rows
    # that stopped early leaves trailing all-padding response columns too.
    tiny_model.generation_config.eos_token_id = tiny_tokenizer.convert_tokens_to_ids(list("0123456789"))
    r = sample(tiny_model, tiny_tokenizer, PROMPTS * 8, torch.ones(32), SamplingConfig(max_new_tokens=10), _gen(2))
    lengths = r.response_mask.sum(-1)
    rows = r.select([i for i in range(1, 32, 4) if lengths[i] < 10])  # "7=" rows that stopped early
    assert rows.num_sequences >= 2
    short = rows.trim()
    assert short.prompt_ids.shape[1] == 2 and short.prompt_mask.all()
    assert short.response_ids.shape[1] == int(rows.response_mask.sum(-1).max()) < 10
    # The untrimmed forward, by hand: full width, padding columns included.
    full = response_logits(tiny_model, rows.prompt_ids, rows.prompt_mask, rows.response_ids,
                           rows.response_mask, rows.temperatures)  # [n, T, V]
    expected = logprobs_from_logits(full, rows.response_ids) * rows.response_mask
    got, _ = token_logprobs(tiny_model, rows, rows.temperatures, micro_batch=8)  # trims inside
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)
