"""The supervised loop: packing, the seq-mean-token-mean loss by hand, and that it learns."""

from __future__ import annotations

import math

import pytest
import torch

from agpo.models.tiny import tiny_llama
from agpo.train.sft import SFTConfig, pack, sequence_nll, sft


def test_pack_flags_by_hand() -> None:
    ids, mask, is_target, is_context = pack([([5, 6], [7]), ([], [8, 9, 4])], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 9, 4]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 1]]
    assert is_context.tolist() == [[True, True, False], [False, False, False]]
    assert is_target.tolist() == [[False, False, True], [True, True, True]]
    ids, mask, _, _ = pack([([5], [7]), ([5, 6, 6], [7])], pad_id=0)
    assert ids.tolist() == [[5, 7, 0, 0], [5, 6, 6, 7]] and mask[0].tolist() == [1, 1, 0, 0]


class _Uniform(torch.nn.Module):
    """Logits all zero: every next token has probability 1/V, so every NLL is log V."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):  # noqa: ANN201
        class Out:
            logits = torch.zeros(*input_ids.shape, self.vocab)

        return Out()


def test_loss_is_seq_mean_token_mean() -> None:
    v = 10
    m = _Uniform(v)
    batch = [([1, 2], [3]), ([], [4, 5, 6])]
    # each example's target tokens have NLL log 10 → per-example mean log 10 → mean log 10;
    # the second example's first target token has no prediction (nothing before it)
    assert sequence_nll(m, batch, pad_id=0).item() == pytest.approx(math.log(v))
    # + 0.5 × context mean: only the first example has a scored context token (token 2) → log 10
    assert sequence_nll(m, batch, 0, context_weight=0.5).item() == pytest.approx(1.5 * math.log(v))


def test_sft_learns_a_mapping_with_weights() -> None:
    torch.manual_seed(0)
    model = tiny_llama(8, hidden=32, layers=1, heads=2, kv_heads=1, max_positions=16, seed=0)
    examples = [([1, 3], [4]), ([1, 5], [6]), ([1, 7], [7])]
    # the third example is never drawn (weight 0): the loop must not learn it
    losses = sft(model, examples, SFTConfig(steps=150, batch_size=8, lr=1e-2), pad_id=0,
                 weights=[1.0, 1.0, 0.0])
    assert len(losses) == 150 and losses[-1] < 0.1 < losses[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 3], [1, 5]])).logits[:, -1]
    assert logits.argmax(-1).tolist() == [4, 6]
    assert sequence_nll(model, examples[2:], 0).item() > 1.0


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="warmup"):
        SFTConfig(warmup=1.0)
