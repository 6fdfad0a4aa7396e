"""The algorithms module is pure math: no I/O, no model code, no host syncs via .item()."""

from __future__ import annotations

import re
from pathlib import Path

import agpo.algos

ALGOS = Path(agpo.algos.__file__).parent
FORBIDDEN = [
    r"\.item\(",
    r"\bopen\(",
    r"\bprint\(",
    r"\bimport (transformers|accelerate|datasets)",
    r"\bfrom (transformers|accelerate|datasets)\b",
    r"from_pretrained",
    r"torch\.load|torch\.save",
    r"\b(eval|exec)\(",
]


def test_no_io_no_model_no_item():
    for path in sorted(ALGOS.glob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for pattern in FORBIDDEN:
                assert not re.search(pattern, line), f"{path.name}:{lineno}: {line.strip()}"
