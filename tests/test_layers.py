"""The library's floors: every import goes down (or stays in its own package), none climbs.

The library is the pipeline's stages and the top-level modules but cli.py (the ``agpo``
command, which maps names to every floor). From the bottom up:

    base     the top-level modules: errors, types, registry, ops, io, configs, passk, lazy
    tasks    problems and prompt templates            rewards   verifiers
    models   loading models (the testbed's needs its task)
    policy   the policy's forward: log-probs of sampled rows, the prompt cache, micro-batches
    rollout  sampling: the engines and agpo's sampler
    algos    the methods' math                         eval      pass@k evaluation
    train    the RL loop, the update, checkpoints (its periodic evaluation calls eval)
    commands each package's command-line module (``cli.py``, ``*_cli.py``): a command may
             compose any floors (``agpo eval --model RUN`` reads train's checkpoints)

A module may import the base, any package on a lower floor and its own package; packages that
share a floor do not import each other, and no other package's module imports a command. Above the
library sit the applications, the integrations and the ``agpo`` command (agpo/cli.py), which it
never imports or names ("names" covers strings too:
an ``importlib.import_module("agpo.apps...")`` target or a provider list is the same dependency
as an import statement, only hidden from linters).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "agpo"
BASE = "base"
FLOORS: list[tuple[str, ...]] = [
    (BASE,),
    ("tasks", "rewards"),
    ("models",),
    ("policy",),
    ("rollout",),
    ("algos", "eval"),
    ("train",),
]
"""The library's floors, lowest first (``BASE``: the top-level modules)."""
FORBIDDEN = ("agpo.apps", "agpo.integrations", "agpo.cli", "agpo.testbed")
LIBRARY = tuple(pkg for floor in FLOORS for pkg in floor if pkg != BASE)
FLOOR_OF = {pkg: i for i, floor in enumerate(FLOORS) for pkg in floor}


def library_files() -> list[Path]:
    top = [p for p in sorted(SRC.glob("*.py")) if p.name != "cli.py"]
    return top + [p for pkg in LIBRARY for p in sorted((SRC / pkg).rglob("*.py"))]


def _module_of(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _forbidden(name: str) -> str | None:
    return next((f for f in FORBIDDEN if name == f or name.startswith(f + ".")), None)


def _package(module: str) -> str | None:
    """The floor-bearing package of an ``agpo...`` module name: ``agpo.train.loop`` → ``train``,
    ``agpo.ops`` (or ``agpo``) → BASE; None outside agpo or outside the library."""
    parts = module.split(".")
    if parts[0] != "agpo":
        return None
    if len(parts) == 1 or parts[1] not in LIBRARY and parts[1] not in ("apps", "integrations", "cli", "testbed"):
        return BASE
    return parts[1] if parts[1] in LIBRARY else None


def _is_command(module: str) -> bool:
    last = module.rpartition(".")[2]
    return last == "cli" or last.endswith("_cli")


def _climbs(importer: str, imported: str) -> str | None:
    """Why module ``importer`` may not import ``imported`` (None when it may)."""
    mine, theirs = _package(importer), _package(imported)
    if mine is None or theirs is None or mine == theirs:
        return None
    if _is_command(imported) and not _is_command(importer):
        return f"{imported} is a command"
    if _is_command(importer):
        return None
    if FLOOR_OF[theirs] > FLOOR_OF[mine]:
        return f"{theirs} is above {mine}"
    if FLOOR_OF[theirs] == FLOOR_OF[mine]:
        return f"{theirs} shares {mine}'s floor"
    return None


def violations(path: Path) -> list[str]:
    """``"file:line: what"`` for each import of, or string naming, a forbidden module, and each
    import that climbs a floor."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return scan(path.read_text(encoding="utf-8"), module, package, str(path.relative_to(SRC.parent)))


def scan(source: str, module: str, package: str, label: str) -> list[str]:
    """The violations of module ``module``'s ``source``; ``package`` anchors its relative imports."""
    tree = ast.parse(source, filename=label)
    found: list[str] = []

    def check(name: str, node: ast.AST, how: str) -> None:
        if (bad := _forbidden(name)) is not None:
            found.append(f"{label}:{node.lineno}: {how} {name!r} ({bad})")
        elif how == "imports" and (why := _climbs(module, name)) is not None:
            found.append(f"{label}:{node.lineno}: imports {name!r} ({why})")

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
            if base == "agpo":  # `from agpo import policy`: the alias is the module imported
                names = names[1:]
            check(next((n for n in names if _forbidden(n) or _climbs(module, n)), names[0]), node, "imports")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            words = [w.strip("`'\",;:()[]") for w in node.value.replace("/", ".").split()]
            if len(words) == 1 and words[0].startswith("agpo."):  # a module path: a lazy import
                check(words[0], node, "imports")
                continue
            for word in words:
                check(word, node, "names")
    return found


def test_library_files_are_found_and_every_package_has_a_floor() -> None:
    names = {_module_of(p) for p in library_files()}
    assert {"agpo.registry", "agpo.train.loop", "agpo.tasks.base", "agpo.models", "agpo.policy.forward"} <= names
    assert "agpo.cli" not in names
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages - {"apps", "integrations"} == set(LIBRARY)  # a new package gets its floor here


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
    found = scan(source, "agpo.train.loop", "agpo.train", "probe.py")
    assert [line.split(":")[1] for line in found] == ["1", "2", "3", "4", "5", "5"], found


def test_the_check_sees_an_import_that_climbs_a_floor() -> None:
    source = (
        "from agpo.train.update import update\n"  # algos → train: up
        "import agpo.eval.passk\n"  # algos → eval: the same floor
        "from agpo import rollout\n"  # algos → rollout: down, allowed
        "from agpo.ops import masked_mean\n"  # the base: allowed
        "from . import advantages\n"  # its own package: allowed
        "def f():\n    from agpo.train import control\n"  # a lazy import climbs all the same
        "EXPORTS = {'x': 'agpo.train.loop'}\n"  # a lazy export's target: an import
        "DOC = 'the state lives in agpo.train.control'\n"  # prose naming a module: allowed
    )
    found = scan(source, "agpo.algos.controllers", "agpo.algos", "probe.py")
    assert [line.split(":")[1] for line in found] == ["1", "2", "7", "8"], found
    assert "train is above algos" in found[0] and "eval shares algos's floor" in found[1]
    # A command composes floors; the library never imports one.
    assert scan("from agpo.train.checkpoint import RUN_CONFIG\n", "agpo.eval.cli", "agpo.eval", "x.py") == []
    assert "is a command" in scan("from agpo.eval.cli import run\n", "agpo.train.loop", "agpo.train", "x.py")[0]
    # The base may import the base, and nothing else.
    assert scan("from agpo.errors import UserError\n", "agpo.configs", "agpo", "x.py") == []
    assert scan("from agpo.models import load\n", "agpo.configs", "agpo", "x.py") != []
