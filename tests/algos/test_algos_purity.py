"""The algorithms floor is pure math: no I/O, no model code, no host syncs, no running state.

Read from each module's syntax tree, not its text: ``float(x)``, ``int(x)`` and ``bool(x)`` of a
tensor are host syncs as much as ``x.item()``, and a regex over lines sees neither them nor a
call split over two lines. A conversion passes only when its argument is visibly a Python
number already: a literal, a ``len(...)``, a shape or a dimension count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import agpo.algos

ALGOS = Path(agpo.algos.__file__).parent
SYNC_METHODS = {"item", "tolist", "numpy", "cpu"}
"""Tensor methods that copy to the host (``cpu``: the device's data, a sync on a GPU)."""
CONVERSIONS = {"float", "int", "bool", "complex"}
BUILTINS = {"open", "print", "eval", "exec", "input"}
MODEL_PACKAGES = ("transformers", "accelerate", "datasets", "peft", "vllm")
IO_CALLS = {("torch", "load"), ("torch", "save")}


def _python_number(node: ast.expr) -> bool:
    """Whether ``node`` is visibly a Python number: a literal, ``len(...)``, ``x.shape[...]``,
    ``x.ndim``, ``x.numel()`` or ``x.dim()``."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("numel", "dim"):
        return True
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "shape":
        return True
    return isinstance(node, ast.Attribute) and node.attr == "ndim"


def impurities(source: str, label: str) -> list[str]:
    """``"label:line: what"`` for each host sync, I/O call, model import or eval in ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename=label)):
        what = None
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in SYNC_METHODS:
                what = f".{f.attr}() copies to the host"
            elif isinstance(f, ast.Attribute) and f.attr == "from_pretrained":
                what = "loads a model"
            elif (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                  and (f.value.id, f.attr) in IO_CALLS):
                what = f"{f.value.id}.{f.attr} is I/O"
            elif isinstance(f, ast.Name) and f.id in BUILTINS:
                what = f"{f.id}() is I/O or eval"
            elif (isinstance(f, ast.Name) and f.id in CONVERSIONS
                  and not all(_python_number(a) for a in node.args)):
                what = f"{f.id}() of what may be a tensor is a host sync"
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad = [n for n in names if n.split(".")[0] in MODEL_PACKAGES]
            if bad:
                what = f"imports {bad[0]}"
        if what is not None:
            found.append(f"{label}:{node.lineno}: {what}")
    return found


@pytest.mark.parametrize("path", sorted(ALGOS.glob("*.py")), ids=lambda p: p.name)
def test_no_io_no_model_no_host_sync(path: Path) -> None:
    assert impurities(path.read_text(encoding="utf-8"), path.name) == []


def test_the_check_sees_every_form() -> None:
    source = (
        "a = float(x.sum())\n"  # 1: float(tensor)
        "b = x.tolist()\n"  # 2
        "c = loss.item()\n"  # 3
        "d = int(\n    t.max())\n"  # 4: split over two lines
        "if bool((t > 0).all()): pass\n"  # 6
        "e = t.detach().cpu()\n"  # 7
        "import transformers\n"  # 8
        "from peft import LoraConfig\n"  # 9
        "m = Model.from_pretrained('x')\n"  # 10
        "torch.save(m, 'f')\n"  # 11
        "open('f')\n"  # 12
        # allowed: visibly Python numbers already
        "n = int(x.shape[-1]) + int(len(xs)) + float(2) + int(x.numel()) + int(x.ndim)\n"
    )
    found = impurities(source, "probe.py")
    assert sorted(int(line.split(":")[1]) for line in found) == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12], found
