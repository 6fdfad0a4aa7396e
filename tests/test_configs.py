"""The generic YAML → dataclass loader (agpo.configs): what a user's --config can get wrong."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from agpo.configs import from_yaml
from agpo.errors import UserError


@dataclass(frozen=True)
class _Section:
    lr: float = 1e-3


@dataclass(frozen=True)
class _Run:
    optim: _Section = _Section()


def test_a_directory_as_config_says_so(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is a directory; give a YAML file"):
        from_yaml(tmp_path, _Run)


def test_a_missing_config_says_so(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        from_yaml(tmp_path / "nope.yaml", _Run)


def test_a_value_of_the_wrong_type_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: fast\n")
    with pytest.raises(UserError, match=r"run\.yaml:2.*optim\.lr"):
        from_yaml(path, _Run)
