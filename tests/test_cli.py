"""The `agpo` dispatcher: an error of the file system is one line naming the file, a closed
pipe ends quietly, an interrupt says how to continue."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from agpo.cli import COMMANDS
from agpo.cli import main as agpo


@pytest.fixture
def command(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[list[str]], int]], str]:
    """Registers ``fn`` as the command ``fake`` (what a subcommand's ``main`` would raise)."""

    def register(fn: Callable[[list[str]], int]) -> str:
        module = types.ModuleType("agpo_fake_command")
        module.main = fn  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(COMMANDS, "fake", (module.__name__, "a test command"))
        return "fake"

    return register


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_a_full_disk_names_the_file_and_says_the_work_resumes(command, capsys) -> None:
    def full(argv: list[str]) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/metrics.jsonl")

    assert agpo([command(full)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: runs/x/metrics.jsonl: No space left on device; free some space")
    assert "re-run the same command" in line and "--resume" in line


def test_a_dangling_link_as_out_is_one_line(command, capsys, tmp_path: Path) -> None:
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")

    def make_out(argv: list[str]) -> int:
        link.mkdir(parents=True, exist_ok=True)  # what every --out DIR does first
        return 0

    assert agpo([command(make_out)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line == (f"error: {link}: a symbolic link to {str(tmp_path / 'gone')!r}, which does "
                    "not exist; remove the link or give another path")


def test_a_read_only_place_is_one_line(command, capsys) -> None:
    def denied(argv: list[str]) -> int:
        raise PermissionError(errno.EROFS, "Read-only file system", "/mnt/ro/report.html")

    assert agpo([command(denied)]) == 1
    assert _one_line(capsys.readouterr().err) == (
        "error: /mnt/ro/report.html: Read-only file system; give a path this user can write")


def test_a_full_disk_while_writing_a_report(tmp_path: Path, capsys,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    d = tmp_path / "eval"
    d.mkdir()
    (d / "samples.jsonl").write_text(json.dumps({"problem_id": 1, "sample": 0, "correct": True})
                                     + "\n")
    out = tmp_path / "report.html"

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # the system names no file

    monkeypatch.setattr(os, "fsync", full)
    assert agpo(["report", str(d), "--out", str(out)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {out}: No space left on device; free some space")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_an_interrupt_says_how_to_continue(command, capsys) -> None:
    def interrupted(argv: list[str]) -> int:
        raise KeyboardInterrupt

    assert agpo([command(interrupted)]) == 130
    assert "re-run the same command" in capsys.readouterr().err


def test_help_into_a_closed_pipe_ends_quietly() -> None:
    # `agpo passk --help | head -1`: the reader is gone before agpo writes.
    proc = subprocess.Popen([sys.executable, "-m", "agpo.cli", "passk", "--help"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 1)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
