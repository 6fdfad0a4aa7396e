"""Rollout's row operations (select, trim, concat, map_tensors): the one place that builds a
Rollout out of others, field by field."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from agpo.types import Rollout

PAD = 9


def _rollout(prompts: list[list[int]], responses: list[list[int]], start: int = 0) -> Rollout:
    """Rows with left-padded prompts and right-padded responses; log-probs −(token id)."""
    n, p, t = len(prompts), max(map(len, prompts)), max(map(len, responses))
    prompt_ids = torch.tensor([[PAD] * (p - len(q)) + q for q in prompts])
    prompt_mask = torch.tensor([[0] * (p - len(q)) + [1] * len(q) for q in prompts])
    response_ids = torch.tensor([r + [PAD] * (t - len(r)) for r in responses])
    response_mask = torch.tensor([[1] * len(r) + [0] * (t - len(r)) for r in responses])
    return Rollout(prompt_ids, prompt_mask, response_ids, response_mask,
                   logprobs=-response_ids.float() * response_mask, temperatures=torch.arange(n) + 1.0 + start,
                   truncated=torch.tensor([len(r) % 2 == 0 for r in responses]),
                   texts=[f"t{start + i}" for i in range(n)])


def _rows(r: Rollout) -> list[tuple]:
    """Each row without its padding: (prompt, response, log-probs, τ, truncated, text)."""
    out = []
    for i in range(r.num_sequences):
        pm, rm = r.prompt_mask[i].bool(), r.response_mask[i].bool()
        out.append((r.prompt_ids[i][pm].tolist(), r.response_ids[i][rm].tolist(), r.logprobs[i][rm].tolist(),
                    float(r.temperatures[i]), bool(r.truncated[i]), r.texts[i]))
    return out


def test_every_field_is_a_tensor_but_the_texts():
    # The row operations treat every field but texts as a tensor with rows first: a new field
    # must be one, or they need to learn about it.
    names = [f.name for f in dataclasses.fields(Rollout)]
    assert names[-1] == "texts"
    r = _rollout([[1, 2], [3]], [[4], [5, 6]])
    assert all(isinstance(getattr(r, n), torch.Tensor) and getattr(r, n).shape[0] == 2 for n in names[:-1])


@pytest.mark.parametrize("index", [[2, 0], torch.tensor([2, 0]), slice(0, 3, 2)])
def test_select_keeps_the_chosen_rows_whole(index):
    r = _rollout([[1, 2], [3], [4, 5, 6]], [[7], [8, 1], [2, 3, 4]])
    got = _rows(r.select(index))
    want = [_rows(r)[i] for i in ([2, 0] if not isinstance(index, slice) else [0, 2])]
    assert got == want


def test_trim_drops_the_columns_that_are_padding_in_every_row():
    r = _rollout([[1, 2], [3], [4, 5, 6]], [[7], [8, 1], [2, 3, 4]]).select([0, 1])  # P = 3, T = 3
    short = r.trim()
    assert short.prompt_ids.shape == (2, 2) and short.response_ids.shape == (2, 2)
    assert _rows(short) == _rows(r)
    assert r.trim(prompt=False).prompt_ids.shape == (2, 3)  # prompt columns kept when asked
    assert short.trim() is short  # nothing left to drop
    one = _rollout([[1]], [[2]])
    assert one.trim() is one


def test_concat_re_pads_prompts_on_the_left_and_responses_on_the_right():
    a = _rollout([[1, 2]], [[3]])
    b = _rollout([[4], [5, 6, 7]], [[8, 1, 2], [3]], start=1)
    both = Rollout.concat([a, b], PAD)
    assert both.prompt_ids.shape == (3, 3) and both.response_ids.shape == (3, 3)
    assert _rows(both) == _rows(a) + _rows(b)
    assert both.prompt_ids[0, 0] == PAD and both.prompt_mask[0, 0] == 0 and both.response_ids[0, -1] == PAD
    assert both.logprobs[0, 1:].eq(0).all() and both.response_mask[0, 1:].eq(0).all()
    assert Rollout.concat([a], PAD) is a


def test_map_tensors_applies_to_every_tensor_field():
    r = _rollout([[1, 2]], [[3]])
    seen: list[str] = []
    copy = r.map_tensors(lambda name, x: (seen.append(name), x.clone())[1], ["other"])
    assert seen == [f.name for f in dataclasses.fields(Rollout)][:-1] and copy.texts == ["other"]
    assert _rows(copy)[0][:5] == _rows(r)[0][:5]
