"""agpo.io: the one JSON-lines reader (file:line errors) and the env.json record."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agpo.errors import UserError
from agpo.io import ENV_PACKAGES, env_info, iter_jsonl, read_jsonl, resolve_device


def test_rows_keep_their_file_line_numbers() -> None:
    lines = ['{"a": 1}\n', "\n", "   \n", '{"a": 2}\n']
    # blank lines 2 and 3 are skipped but still counted, so the second row is line 4
    assert list(iter_jsonl(lines, "x.jsonl")) == [(1, {"a": 1}), (4, {"a": 2})]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{oops", "x.jsonl:2: not valid JSON (Expecting property name"),
        ("[1, 2]", "x.jsonl:2: expected a JSON object, got list"),
        ('"text"', "x.jsonl:2: expected a JSON object, got str"),
    ],
)
def test_a_bad_line_names_file_and_line(line: str, message: str) -> None:
    with pytest.raises(UserError) as e:
        list(iter_jsonl(['{"a": 1}\n', line + "\n"], "x.jsonl"))
    assert str(e.value).startswith(message)


def test_the_unparseable_message_can_keep_a_callers_wording() -> None:
    with pytest.raises(UserError, match=r"^in\.jsonl:1: not a JSON object \("):
        list(iter_jsonl(["nope\n"], "in.jsonl", bad_json="not a JSON object"))


def test_on_bad_skips_and_reports_each_bad_line() -> None:
    bad: list[str] = []
    lines = ["oops\n", '{"a": 1}\n', "[]\n"]
    rows = list(iter_jsonl(lines, "x.jsonl", on_bad=lambda e: bad.append(str(e))))
    assert rows == [(2, {"a": 1})]
    assert [m.split(": ")[0] for m in bad] == ["x.jsonl:1", "x.jsonl:3"]


def test_a_torn_last_line_is_skipped_only_when_asked() -> None:
    lines = ['{"a": 1}\n', '{"a": 2}']  # the writer was killed before the second newline
    assert list(iter_jsonl(lines, "s.jsonl")) == [(1, {"a": 1}), (2, {"a": 2})]
    assert list(iter_jsonl(lines, "s.jsonl", skip_torn_tail=True)) == [(1, {"a": 1})]
    torn = ['{"a": 1}\n', '{"a": ']  # half a row: an error unless torn tails are expected
    assert list(iter_jsonl(torn, "s.jsonl", skip_torn_tail=True)) == [(1, {"a": 1})]
    with pytest.raises(UserError, match=r"s\.jsonl:2: not valid JSON"):
        list(iter_jsonl(torn, "s.jsonl"))


def test_read_jsonl_reads_a_file_and_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"q": "é"}\n\n{"q": 2}\n', encoding="utf-8")
    assert list(read_jsonl(path)) == [(1, {"q": "é"}), (3, {"q": 2})]
    # The bad byte is on line 3: the error names that line, not the start of a read buffer.
    path.write_bytes(b'{"q": 1}\n{"q": 2}\n{"q": "\xff"}\n')
    with pytest.raises(UserError, match=rf"^{path}:3: not UTF-8 text"):
        list(read_jsonl(path))


def test_env_info_records_versions_and_the_device() -> None:
    env = env_info(resolve_device("cpu"), seed=7)
    assert env["device"] == "cpu" and env["cuda"] is None
    assert env["seed"] == 7 and env["world_size"] == 1
    assert list(env["packages"]) == list(ENV_PACKAGES)
    assert env["packages"]["torch"]  # installed, so a version string, not null
    assert env["git_sha"] is None or len(env["git_sha"]) == 40
    assert (env["git_dirty"] is None) == (env["git_sha"] is None)
    assert env["cpu"] is None or env["cpu"].strip()


@pytest.mark.parametrize("line, message", [
    ('{"a": ' + "[" * 10_000 + "]" * 10_000 + "}", "x.jsonl:1: not valid JSON (nested too deeply)"),
    ('{"a": ' + "1" * 5000 + "}", "x.jsonl:1: not valid JSON (Exceeds the limit (4300 digits)"),
])
def test_hostile_json_is_a_located_error_not_a_crash(line: str, message: str) -> None:
    with pytest.raises(UserError) as e:
        list(iter_jsonl([line + "\n"], "x.jsonl"))
    assert str(e.value).startswith(message)


def test_metrics_rows_are_strict_json_and_checked(tmp_path: Path) -> None:
    from agpo.io import dumps_finite, read_metrics

    assert dumps_finite({"step": 1, "a": float("nan"), "b": float("inf"), "c": 0.5}) == \
        '{"step": 1, "a": null, "b": null, "c": 0.5}'
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "a": null}\n{"step": 2, "a": 0.5}\n{"step": 3, "a')  # torn tail
    assert read_metrics(path) == [{"step": 1, "a": None}, {"step": 2, "a": 0.5}]
    path.write_text('{"step": 1, "a": "high"}\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl:1: field 'a': expected a number or null"):
        read_metrics(path)


def test_dir_lock_is_exclusive_and_dropped_on_release(tmp_path: Path) -> None:
    from agpo.io import DirLock

    first = DirLock(tmp_path, "--resume")
    with pytest.raises(UserError, match="another agpo process is writing"):
        DirLock(tmp_path, "--resume")
    assert DirLock.empty(tmp_path)  # the lock file alone does not make a run directory
    first.release()
    DirLock(tmp_path, "--resume").release()


def _refused(folder: Path) -> UserError:
    from agpo.io import DirLock

    try:
        DirLock(folder, "--out")
    except UserError as e:
        return e  # its traceback keeps the refused lock alive until the caller drops it
    raise AssertionError("the second lock was not refused")


def test_a_refused_lock_never_closes_another_files_descriptor(tmp_path: Path) -> None:
    import gc

    from agpo.io import DirLock

    held = DirLock(tmp_path, "--out")
    err = _refused(tmp_path)
    # The refused lock's descriptor is closed; a file opened now gets its number. Dropping the
    # refused lock must not close that number again: it is this file's now.
    with (tmp_path / "other.txt").open("w") as other:
        del err
        gc.collect()
        os.fstat(other.fileno())  # EBADF if the number was closed under it
        other.write("still open")
    assert (tmp_path / "other.txt").read_text() == "still open"
    held.release()


def test_a_lock_that_never_opened_has_nothing_to_release(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from agpo.io import DirLock

    ignored: list[BaseException | None] = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: ignored.append(u.exc_value))
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        DirLock(tmp_path / "file" / "run", "--out")  # its folder cannot be made
    gc.collect()
    assert ignored == []  # no "Exception ignored in __del__" (AttributeError: _fd)


def test_dumps_finite_cleans_every_depth() -> None:
    from agpo.io import dumps_finite

    row = {"a": [1.0, float("nan"), {"b": float("-inf")}], "c": (2, float("inf"))}
    assert dumps_finite(row) == '{"a": [1.0, null, {"b": null}], "c": [2, null]}'
    assert dumps_finite(float("nan")) == "null"
    # What a `default` hook returns is cleaned too.
    assert dumps_finite({"x": {1}}, default=lambda o: [float("nan")]) == '{"x": [null]}'


def test_a_failed_atomic_write_names_the_file_and_keeps_the_old(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from agpo.io import replace_text

    path = tmp_path / "passk.json"
    path.write_text("old")

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # as os.fsync reports it: no file

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as e:
        replace_text(path, "new")
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(path))
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["passk.json"]  # no temp file left


def test_read_parquet_refuses_what_is_not_parquet(tmp_path: Path) -> None:
    from agpo.io import read_parquet

    path = tmp_path / "x.parquet"
    path.write_bytes(b"")
    with pytest.raises(UserError, match=rf"^{path}: an empty file \(0 bytes\), not parquet$"):
        list(read_parquet(path))
    path.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match=rf"^{path}: not a readable parquet file \("):
        list(read_parquet(path))


@pytest.mark.parametrize("threads, load, warned", [(2, 3.9, True), (2, 1.0, True), (2, 0.3, False), (1, 3.9, False)])
def test_threads_on_busy_cores_are_warned_about(threads: int, load: float, warned: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from agpo.io import use_threads

    before = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    try:
        msg = use_threads(threads, "--threads")
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    # Two threads where another job already holds a core spin at OpenMP's barriers (measured
    # 30× slower sampling): the user is told, naming the flag that fixes it.
    assert (msg is not None) == warned
    assert msg is None or ("--threads 1" in msg and f"load average {load:.1f} on 2 cores" in msg)


def test_sleeping_openmp_threads_are_not_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from agpo.io import use_threads

    before = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.9, 3.9, 3.9))
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")  # the remedy the warning names, in place
    try:
        assert use_threads(2, "--threads") is None
    finally:
        torch.set_num_threads(before)
