"""Shared fixtures: one session-scoped tiny model and tokenizer (built here, nothing downloaded).

Tests run with deterministic CPU settings and one torch thread so results do not depend on the
machine's core count.
"""

from __future__ import annotations

import pytest
import torch

from agpo.testbed.tiny import char_tokenizer, tiny_llama

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return char_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A ``from_pretrained`` folder (model + tokenizer) of a random-init tiny Llama."""
    path = tmp_path_factory.mktemp("tiny_model")
    tiny_tokenizer.save_pretrained(path)
    tiny_llama(len(tiny_tokenizer), hidden=32, layers=2, heads=4, kv_heads=2).save_pretrained(path)
    return path


@pytest.fixture
def tiny_model(tiny_tokenizer):
    """A fresh random-init tiny Llama (function-scoped: tests may train it)."""
    return tiny_llama(len(tiny_tokenizer), hidden=32, layers=2, heads=4, kv_heads=2)
