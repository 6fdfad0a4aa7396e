"""The shipped testbed base model, built once per test session (DESIGN: one cached testbed
base model per CI run, about 1.5 minutes on one thread).

With ``AGPO_CACHE`` set (e.g. by CI, or to share `agpo demo`'s cache) the tests reuse the model
cached there; otherwise they build it into a private session folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agpo.models.testbed import Recipe, build_base_model


@pytest.fixture(scope="session")
def testbed_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("AGPO_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("agpo_cache")


@pytest.fixture(scope="session")
def testbed_base(testbed_cache: Path) -> Path:
    """The base model of the shipped recipe, seed 0 (what `agpo demo` starts from)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AGPO_CACHE", str(testbed_cache))
    try:
        return build_base_model(0, Recipe())
    finally:
        mp.undo()
