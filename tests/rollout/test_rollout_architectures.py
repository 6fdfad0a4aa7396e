"""The sampler and the scorer on other causal-LM families than Llama (random tiny models built
here): attention biases (Qwen2), sliding-window caches (Mistral with a window shorter than the
sequences), learned absolute positions (GPT-2), alternating sliding/full layers (Gemma 2). For
each: the sampling log-probs equal re-scoring, with left padding, per-row temperatures and
finished rows leaving the decode batch."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    GPT2Config,
    MistralConfig,
    Qwen2Config,
)

from agpo.policy import token_logprobs
from agpo.rollout import SamplingConfig, sample

PROMPTS = ["12+34=", "7=", "abc+defgh=", "0", "(1+2)*3="]


def _config(family: str, vocab: int):  # noqa: ANN202
    common = {"vocab_size": vocab, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if family == "qwen2":
        return Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=128, **common)
    if family == "mistral":  # a window shorter than prompt + response: the cache must slide
        return MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=128, sliding_window=6, **common)
    if family == "gemma2":
        return Gemma2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=8, max_position_embeddings=128, sliding_window=6,
                            **common)
    return GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **common)


# Gemma 2 has no SDPA attention in transformers; the others run both kernels.
@pytest.mark.parametrize(("family", "attention"), [
    (f, a) for f in ("qwen2", "mistral", "gemma2", "gpt2") for a in ("sdpa", "eager") if (f, a) != ("gemma2", "sdpa")
])
def test_sampling_logprobs_equal_rescoring_on_other_families(family, attention, tiny_tokenizer, monkeypatch):
    from transformers.cache_utils import Cache

    selections: list[int] = []
    select_rows = Cache.batch_select_indices
    monkeypatch.setattr(Cache, "batch_select_indices",
                        lambda self, idx: (selections.append(len(idx)), select_rows(self, idx))[1])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config(family, len(tiny_tokenizer)), attn_implementation=attention)
    # Frequent characters stop a response, so lengths spread and finished rows leave the batch.
    model.generation_config.eos_token_id = [2, *tiny_tokenizer.convert_tokens_to_ids(list("0123456789"))]
    temps = torch.tensor([0.7, 1.0, 1.3, 1.0, 0.9] * 4)
    r = sample(model, tiny_tokenizer, PROMPTS * 4, temps, SamplingConfig(max_new_tokens=12),
               torch.Generator().manual_seed(1))
    lengths = r.response_mask.sum(-1)
    assert lengths.min() < lengths.max() and selections  # rows did leave the decode batch
    logprobs, _ = token_logprobs(model, r, r.temperatures, micro_batch=7)
    assert torch.allclose(logprobs, r.logprobs, atol=1e-5), family
