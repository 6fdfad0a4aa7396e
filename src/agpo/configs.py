"""Configs as frozen dataclasses: the one validation style and the one YAML → dataclass loader.

Validation: a config's ``__post_init__`` checks each value with ``require(ok, "section.field",
why)``, which raises ``ConfigError`` ("--section.field: why"), a UserError: ``agpo`` prints it as
one line and exits with 2, from a flag or a YAML file alike. (Not a ValueError: tyro turns a
ValueError raised while it builds a config into a box of its own.) ``agpo train``'s run config
(agpo.train.config), its sections and the applications' configs all load through
``from_yaml`` (defaults < YAML) and take flags through tyro.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import yaml

from agpo.errors import UserError, at


class ConfigError(UserError):
    """A bad config value or combination: one line naming the flag and the fix."""


def flag(path: str) -> str:
    """``"algo.adv.beta_pos"`` → ``"--algo.adv.beta-pos"`` (tyro's spelling of the field)."""
    return "--" + path.replace("_", "-")


def require(ok: bool, path: str, msg: str) -> None:
    """Raise ``ConfigError("--path: msg")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{flag(path)}: {msg}")


def require_name(name: str, valid: Iterable[str], path: str) -> None:
    """``name`` must be one of ``valid`` (a registry's names); the error lists them sorted."""
    valid = sorted(valid)
    require(name in valid, path, f"unknown name {name!r}; valid: {', '.join(valid)}")


def reject_nan(cfg: Any, prefix: str = "") -> None:
    """ConfigError naming the flag of any NaN in a (nested) config: no field means anything by
    NaN, and NaN passes every ``x <= bound`` check written the usual way."""
    for f in dataclasses.fields(cfg):
        value, path = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            reject_nan(value, f"{path}.")
        else:
            require(not any(isinstance(v, float) and math.isnan(v)
                            for v in (value if isinstance(value, tuple) else (value,))),
                    path, f"{value} is not a number; give a number")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain YAML-able data (tuples become lists, paths strings)."""

    def plain(x: Any) -> Any:
        if isinstance(x, Path):
            return str(x)
        if isinstance(x, tuple | list):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(dataclasses.asdict(cfg))


def from_yaml(path: str | Path, cls: type, *, end_mark: str | None = None) -> Any:
    """A ``cls`` dataclass from a YAML file of overrides (``section: {field: value}``), fields
    not in the file at their defaults.

    Every value is checked against its field's type (int, float, bool, str, Path, Literal,
    tuples, optionals, nested dataclasses), naming ``file:line: section.field``. YAML 1.1 reads
    ``1e-3`` as a string; an unquoted number like that is accepted for a float field, a quoted
    one is not. ``end_mark``: the file must end with this line (its writer's last), so a file
    cut anywhere is refused.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--config {path}: is a directory; give a YAML file")
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    if end_mark is not None:
        last = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
        if last.strip() != end_mark:
            raise UserError(
                f"{path}: {'empty' if not text.strip() else 'cut'} (its last line is not "
                f"{end_mark!r}, which agpo writes at its end); restore it, e.g. from the newest "
                f"checkpoint's run_config.json")
    return _build(cls, data if data is not None else {}, path, node, "")


def _build(cls: type, data: Any, path: Path, node: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a YAML mapping, naming file:line of a bad key."""
    line = node.start_mark.line + 1 if node is not None else None
    if not isinstance(data, dict):
        raise at(path, line, f"{prefix.rstrip('.') or 'top level'}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        child = _child_node(node, key)
        where = child.start_mark.line + 1 if child is not None else line
        path_key = f"{prefix}{key}"
        if key not in names:
            raise at(path, where, f"{path_key}: unknown field; valid: {', '.join(sorted(names))}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value, path, child, f"{path_key}.")
        else:
            kwargs[key] = _typed(kind, value, child, lambda msg, f=path_key, w=where: at(path, w, f"{f}: {msg}"))
    try:
        return cls(**kwargs)
    except (UserError, ValueError, TypeError) as e:
        raise at(path, line, f"{prefix.rstrip('.') or 'config'}: {e}") from None


def _child_node(node: Any, key: str) -> Any:
    if node is None or not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if k.value == key), None)


_FLOAT_TEXT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _typed(kind: Any, value: Any, node: Any, err: Callable[[str], UserError]) -> Any:
    """``value`` (from YAML ``node``) as field type ``kind``, or ``err(why)`` raised."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    got = f"the string {value!r}" if isinstance(value, str) else repr(value)
    plain = isinstance(node, yaml.ScalarNode) and node.style is None  # unquoted in the file
    if kind is Any:
        return value
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise err(f"{got} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        reasons = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _typed(option, value, node, UserError)
            except UserError as e:
                reasons.append(str(e))
        raise err("; or ".join(reasons))
    if kind is bool:
        if not isinstance(value, bool):
            raise err(f"expected true or false, got {got}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise err(f"expected an integer, got {got}")
        return value
    if kind is float:
        if isinstance(value, str) and plain and _FLOAT_TEXT.fullmatch(value):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise err(f"expected a number, got {got}")
        if math.isnan(value):
            raise err("expected a number, got NaN")
        return float(value)
    if kind is str:
        if isinstance(value, int | float) and not isinstance(value, bool) and plain:
            return node.value  # labels: [1, 2, 3] are the strings as written
        if not isinstance(value, str):
            raise err(f"expected a string, got {got}")
        return value
    if kind is Path:
        if not isinstance(value, str):
            raise err(f"expected a path, got {got}")
        return Path(value)
    if origin is tuple:
        if not isinstance(value, list):
            raise err(f"expected a list, got {got}")
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [None] * len(value)
        if len(args) == 2 and args[1] is Ellipsis:
            kinds = [args[0]] * len(value)
        elif len(args) != len(value):
            raise err(f"expected a list of {len(args)} values, got {len(value)}")
        else:
            kinds = list(args)
        return tuple(_typed(k, v, n, err) for k, v, n in zip(kinds, value, nodes, strict=True))
    return value


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict of settings as one level with dotted keys ({"a": {"b": 1}} → {"a.b": 1}):
    what a message names when two sets of settings differ."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
