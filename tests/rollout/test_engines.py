"""The rollout engines are one registry (``ENGINES``): the config's check, ``--help`` and
``build_engine`` all read it."""

from __future__ import annotations

import pytest
import torch

from agpo.configs import ConfigError
from agpo.registry import Registry
from agpo.rollout import ENGINES, EngineProps, SamplingConfig, TransformersEngine, build_engine, require_engine


def test_the_engines_are_a_registry_with_their_checks():
    assert isinstance(ENGINES, Registry) and ENGINES.names() == ["transformers", "vllm"]
    assert ENGINES.props("transformers") == EngineProps(check=None)
    assert ENGINES.props("vllm").check is not None  # vLLM may be missing: checked at config time
    assert "Engines: transformers, vllm." in SamplingConfig.__doc__  # the section's --help


def test_an_unknown_engine_is_one_line_listing_the_registered_ones(tiny_model, tiny_tokenizer):
    with pytest.raises(ConfigError, match=r"--rollout.engine: unknown name 'sglang'; valid: transformers, vllm"):
        SamplingConfig(engine="sglang")
    with pytest.raises(ConfigError, match=r"--engine: unknown name 'x'"):
        require_engine("x", "engine")
    with pytest.raises(KeyError, match="unknown rollout engine 'x'"):
        build_engine("x", tiny_model, tiny_tokenizer, SamplingConfig())


def test_a_registered_engine_is_built_by_name(tiny_model, tiny_tokenizer, monkeypatch):
    engine = build_engine("transformers", tiny_model, tiny_tokenizer, SamplingConfig())
    assert isinstance(engine, TransformersEngine) and engine.model is tiny_model
    # A new engine is one registration: the config accepts it, build_engine makes it.
    made = []
    monkeypatch.setattr(ENGINES, "_entries", dict(ENGINES._entries))
    monkeypatch.setattr(ENGINES, "_props", dict(ENGINES._props))
    ENGINES.register("echo", EngineProps())(lambda model, tokenizer, cfg: made.append(cfg) or engine)
    cfg = SamplingConfig(engine="echo")
    assert build_engine(cfg.engine, tiny_model, tiny_tokenizer, cfg) is engine and made == [cfg]
    r = engine.sample(["1+2="], torch.ones(1), SamplingConfig(max_new_tokens=2), torch.Generator().manual_seed(0))
    assert r.num_sequences == 1
