"""The library depends on nothing above it: no library module imports or names an application,
an integration, the command line or the old testbed package.

The library is the pipeline's stages (algos, rollout, rewards, tasks, train, eval, models) and the
top-level modules but cli.py (the ``agpo`` command, which maps names to every layer). "Names"
covers strings too — an ``importlib.import_module("agpo.apps...")`` target or a provider list
is the same dependency as an import statement, only hidden from linters.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "agpo"
LIBRARY = ("algos", "rollout", "rewards", "tasks", "train", "eval", "models")
FORBIDDEN = ("agpo.apps", "agpo.integrations", "agpo.cli", "agpo.testbed")


def library_files() -> list[Path]:
    top = [p for p in sorted(SRC.glob("*.py")) if p.name != "cli.py"]
    return top + [p for pkg in LIBRARY for p in sorted((SRC / pkg).rglob("*.py"))]


def _module_of(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _forbidden(name: str) -> str | None:
    return next((f for f in FORBIDDEN if name == f or name.startswith(f + ".")), None)


def violations(path: Path) -> list[str]:
    """``"file:line: what"`` for each import of, or string naming, a forbidden module."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return scan(path.read_text(encoding="utf-8"), package, str(path.relative_to(SRC.parent)))


def scan(source: str, package: str, label: str) -> list[str]:
    """The violations of one module's ``source``; ``package`` anchors its relative imports."""
    tree = ast.parse(source, filename=label)
    found: list[str] = []

    def check(name: str, node: ast.AST, how: str) -> None:
        if (bad := _forbidden(name)) is not None:
            found.append(f"{label}:{node.lineno}: {how} {name!r} ({bad})")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check(alias.name, node, "imports")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from agpo import apps` names the module in an alias; one finding per statement
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            check(next((n for n in names if _forbidden(n)), base), node, "imports")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for word in node.value.replace("/", ".").split():
                check(word.strip("`'\",;:()[]"), node, "names")
    return found


def test_library_files_are_found() -> None:
    names = {_module_of(p) for p in library_files()}
    assert {"agpo.registry", "agpo.train.loop", "agpo.tasks.base", "agpo.models"} <= names
    assert "agpo.cli" not in names


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_library_does_not_reach_up(path: Path) -> None:
    assert violations(path) == []


def test_the_check_sees_every_form() -> None:
    source = (
        "import agpo.apps.relevance\n"
        "from agpo import integrations\n"
        "from agpo.cli import main\n"
        "from .. import testbed\n"  # relative, from agpo.train.<module>
        "TARGETS = ('agpo.testbed', 'see agpo/apps/relevance/cli.py')\n"
        "from agpo.models import load\n"  # allowed
        "OK = 'agpo.applications agpo.tasks'\n"  # allowed: only whole module names count
    )
    found = scan(source, "agpo.train", "probe.py")
    assert [line.split(":")[1] for line in found] == ["1", "2", "3", "4", "5", "5"], found
