"""Config validation shared by the algos configs: errors name the flag and the fix."""

from __future__ import annotations

from collections.abc import Iterable

from agpo.errors import UserError


class ConfigError(UserError, ValueError):
    """A bad config value or combination. A ``UserError`` for the CLI (one line, exit 2) and a
    ``ValueError`` for Python callers."""


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
