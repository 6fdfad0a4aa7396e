"""The base model build: deterministic in its recipe, cached by it, written atomically."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors.torch import load_file

from agpo.models import testbed as build
from agpo.models.testbed import Recipe, build_base_model

# Small enough to build in about a second; the build path is the shipped one.
TINY = replace(Recipe(), steps=12, batch=16, hidden=32, warmup=2)


def _weights(path: Path) -> dict:
    return load_file(path / "model.safetensors")


def test_same_seed_same_weights_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGPO_CACHE", str(tmp_path / "a"))
    first = build_base_model(3, TINY)
    assert first.parent == tmp_path / "a" / "testbed"
    assert build_base_model(3, TINY) == first  # cache hit: same folder, not rebuilt
    monkeypatch.setenv("AGPO_CACHE", str(tmp_path / "b"))
    second = build_base_model(3, TINY)
    a, b = _weights(first), _weights(second)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    other = _weights(build_base_model(4, TINY))
    assert not all(a[k].equal(other[k]) for k in a)
    # Only finished folders: the temporary build folders were renamed or removed.
    assert sorted(p.name for p in (tmp_path / "b" / "testbed").iterdir()) == sorted(
        [second.name, f"{TINY.hash()}-seed4"]
    )


def test_folder_loads_with_its_tokenizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("AGPO_CACHE", str(tmp_path))
    path = build_base_model(0, TINY)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert tok.decode(tok.encode("012+345= 357")) == "012+345= 357"
    assert model.config.vocab_size == len(tok)
    assert (path / "testbed.json").is_file()


def test_recipe_hash_names_every_field() -> None:
    assert Recipe().hash() == Recipe().hash()
    assert replace(Recipe(), p_b=0.05).hash() != Recipe().hash()
    assert replace(Recipe(), steps=999).hash() != Recipe().hash()


def test_encode_batch_equals_the_tokenizer() -> None:
    tok = build.testbed_tokenizer()
    rng = random.Random(0)
    texts = [build.corpus_text(rng, Recipe(), frozenset()) for _ in range(50)]
    ids = build.encode_batch(texts, tok)
    assert ids.tolist() == [tok.encode(t) + [tok.eos_token_id] for t in texts]


def test_corpus_mixture() -> None:
    # 20,000 draws: strategy B ≈ 3%, S ≈ 20%, the tens digit always the strategy's own.
    from agpo.tasks import testbed as tasks

    rng, recipe = random.Random(1), Recipe()
    texts = [build.corpus_text(rng, recipe, frozenset()) for _ in range(20000)]
    share_b = sum(t[8] == "\t" for t in texts) / len(texts)
    assert 0.025 < share_b < 0.035
    for t in texts[:2000]:
        p = tasks.Problem(tuple(map(int, t[:3])), tuple(map(int, t[4:7])))  # type: ignore[arg-type]
        strategy = tasks.strategy_of(t[8:])
        assert strategy is not None and t[10] == str(tasks.strategy_digits(p, strategy)[1])


def test_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AGPO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert build.cache_root() == tmp_path / "agpo"
    monkeypatch.setenv("AGPO_CACHE", str(tmp_path / "x"))
    assert build.cache_root() == tmp_path / "x"


def test_cli_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    from agpo.cli import main as agpo

    monkeypatch.setenv("AGPO_CACHE", str(tmp_path))
    assert agpo(["testbed", "build", "--steps", "3"]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert path == build.model_dir(0, replace(Recipe(), steps=3))
    assert (path / "model.safetensors").is_file()
    assert agpo(["testbed", "nope"]) == 2


def test_every_build_pretrains_on_one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import torch

    # Whoever builds (agpo testbed build sets 1 thread; an implicit build inherits the caller's
    # count), the cached folder named by the recipe must hold the same weights.
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setenv("AGPO_CACHE", str(tmp_path / "two"))
        seen: list[int] = []
        path = build_base_model(5, TINY, progress=lambda *_: seen.append(torch.get_num_threads()))
        assert set(seen) == {1} and torch.get_num_threads() == 2  # restored afterwards
        assert json.loads((path / "testbed.json").read_text())["torch_threads"] == 1
        torch.set_num_threads(1)
        monkeypatch.setenv("AGPO_CACHE", str(tmp_path / "one"))
        a, b = _weights(path), _weights(build_base_model(5, TINY))
        assert all(a[k].equal(b[k]) for k in a)
    finally:
        torch.set_num_threads(before)


def test_an_implicit_build_shows_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    import agpo.models
    from agpo.models.testbed import base_model_folder

    monkeypatch.setenv("AGPO_CACHE", str(tmp_path))
    out = io.StringIO()
    path = base_model_folder(0, TINY, console=Console(file=out, width=200))
    shown = out.getvalue()
    assert "building the testbed base model (testbed_add, seed 0" in shown and "12/12" in shown
    assert base_model_folder(0, TINY, console=Console(file=out, width=200)) == path
    assert out.getvalue() == shown  # a cache hit shows nothing
    # `--model testbed` (resolve) builds through it.
    calls: list[tuple[int, Recipe]] = []
    monkeypatch.setattr(build, "base_model_folder", lambda seed, recipe: calls.append((seed, recipe)) or path)
    assert agpo.models.resolve("testbed:testbed_add_steps") == path
    assert calls == [(0, Recipe(task="testbed_add_steps"))]
