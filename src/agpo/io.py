"""What agpo reads and records: JSON-lines input with ``file:line`` errors, and env.json.

``iter_jsonl`` / ``read_jsonl`` are the one reader of JSON lines (samples files, task files,
verify input, relevance pairs): blank lines are skipped, and a line that is not JSON or not an
object becomes a ``UserError`` naming the file and line; ``load_json`` and ``read_parquet`` do
the same for a JSON file and a parquet file. What agpo writes is strict JSON (``dumps_finite``:
NaN and ±inf become null) and a file that must not be torn is written whole
(``replace_text``); an OSError names the file being written (``naming``), so that ``agpo``
prints one line for a full disk. ``DirLock`` keeps one process per run directory.
``env_info`` is the provenance record (versions, git SHA, hardware) that eval and train write
as env.json; ``resolve_device`` turns the ``--device`` flag into the device that record names.

Imports no torch at module level: ``agpo passk`` reads JSON lines through here and must start
fast (a test checks that it never imports torch).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agpo.errors import UserError, at

if TYPE_CHECKING:
    import torch

# env.json records these versions, in this order; a package that is not installed reads null.
ENV_PACKAGES = (
    "torch", "transformers", "tokenizers", "safetensors", "math-verify", "peft", "accelerate",
)


# ---------------------------------------------------------------------------------------------
# JSON lines


def iter_jsonl(
    lines: Iterable[str],
    path: object,
    *,
    skip_torn_tail: bool = False,
    on_bad: Callable[[UserError], None] | None = None,
    bad_json: str = "not valid JSON",
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_number, row)`` for each non-blank line of ``lines``; line numbers start at 1.

    ``path`` only names the source in errors (a Path, or ``"<stdin>"``).
    ``skip_torn_tail``: a last line without its newline ends the rows silently instead of being
    parsed; an appending writer killed mid-write leaves one (see ``agpo.eval.samples``).
    ``on_bad``: called with the error of a line that is not a JSON object, which is then
    skipped; ``None`` raises it. ``bad_json``: how the error of an unparseable line starts
    (``agpo verify`` says "not a JSON object", and its users may match on it).

    >>> list(iter_jsonl(['{"a": 1}\\n', '\\n', '{"a": 2}\\n'], "x.jsonl"))
    [(1, {'a': 1}), (3, {'a': 2})]
    """
    lineno = 0
    try:
        for lineno, line in enumerate(lines, start=1):
            if skip_torn_tail and not line.endswith("\n"):
                return
            if not line.strip():
                continue
            try:
                row = _parse_object(line, path, lineno, bad_json)
            except UserError as e:
                if on_bad is None:
                    raise
                on_bad(e)
                continue
            yield lineno, row
    except UnicodeDecodeError:
        # Only a text stream (stdin) gets here; it decodes a read buffer (8 KiB) at a time, so
        # the bad byte is in this line or a little after it: a close line number beats none.
        raise at(path, lineno + 1, "not UTF-8 text") from None


def read_jsonl(
    path: Path,
    *,
    skip_torn_tail: bool = False,
    on_bad: Callable[[UserError], None] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``iter_jsonl`` over a UTF-8 file; the file stays open until the rows are consumed.

    Lines are decoded one at a time, so a byte that is not UTF-8 is reported on its own line.
    """
    with path.open("rb") as f:
        yield from iter_jsonl(_decoded(f, path), path, skip_torn_tail=skip_torn_tail, on_bad=on_bad)


def _decoded(lines: Iterable[bytes], path: object) -> Iterator[str]:
    for lineno, raw in enumerate(lines, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise at(path, lineno, "not UTF-8 text") from None


def _parse_object(line: str, path: object, lineno: int, bad_json: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise at(path, lineno, f"{bad_json} ({e.msg})") from None
    except RecursionError:
        raise at(path, lineno, f"{bad_json} (nested too deeply)") from None
    except ValueError as e:  # an integer of more digits than int() converts (4,300)
        raise at(path, lineno, f"{bad_json} ({e})") from None
    if not isinstance(row, dict):
        raise at(path, lineno, f"expected a JSON object, got {type(row).__name__}")
    return row


def load_json(path: Path) -> Any:
    """The JSON value in ``path``; bad JSON or bytes that are not UTF-8 are a UserError naming
    the file (and line), never a decoder's traceback."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise at(path, e.lineno, f"not valid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise at(path, None, "not UTF-8 text") from None
    except RecursionError:
        raise at(path, None, "not valid JSON (nested too deeply)") from None
    except ValueError as e:  # an integer of more digits than int() converts (4,300)
        raise at(path, None, f"not valid JSON ({e})") from None


def parquet_file(path: Path) -> Any:
    """``pyarrow.parquet.ParquetFile`` of ``path``; a file that is not parquet (a CSV renamed
    .parquet, a zero-byte file) is a UserError naming it, not pyarrow's traceback."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow comes with `datasets`
        raise UserError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise _not_parquet(path, e) from None


def read_parquet(path: Path, first: int = 1) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number, row)`` of a parquet file, numbered from ``first``, read a batch at a time:
    a consumer that stops early (``--limit``) never reads the rest of the file."""
    import pyarrow as pa

    pf = parquet_file(path)
    try:
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                yield first, row
                first += 1
    except (pa.ArrowException, OSError) as e:  # a damaged page further in
        raise _not_parquet(path, e) from None


def _not_parquet(path: Path, e: Exception) -> UserError:
    if path.is_file() and path.stat().st_size == 0:
        return at(path, None, "an empty file (0 bytes), not parquet")
    return at(path, None, f"not a readable parquet file ({' '.join(str(e).split())[:200]})")


def finite_number(row: dict[str, Any], key: str, path: object, lineno: int,
                  *, integer: bool = False, optional: bool = False) -> float | int | None:
    """``row[key]`` checked to be a finite number (an int with ``integer``), else a UserError
    naming file, line and field. ``optional``: a missing key or null reads None."""
    value = row.get(key)
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a finite number"
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else is_finite_number(value)
    if not ok:
        got = "missing" if key not in row else f"got {json.dumps(value)[:40]}"
        raise at(path, lineno, f"field {key!r}: expected {kind}, {got}")
    return value


def is_finite_number(x: Any) -> bool:
    """A JSON number that is a finite float (a 400-digit integer is not: float() overflows)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl, each with an integer ``step`` and numeric (or null) values.

    A torn last line (a run killed mid-write) is dropped; any other bad line is a UserError
    naming file, line and field.
    """
    rows = []
    for lineno, row in read_jsonl(path, skip_torn_tail=True):
        finite_number(row, "step", path, lineno, integer=True)
        for key, value in row.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise at(path, lineno, f"field {key!r}: expected a number or null, got "
                                       f"{json.dumps(value)[:40]}")
        rows.append(row)
    return rows


def finite_json(x: Any) -> Any:
    """``x`` with every NaN and ±inf float, at any depth of dicts and lists, replaced by None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_json(v) for v in x]
    return x


def dumps_finite(obj: Any, **kwargs: Any) -> str:
    """JSON text where NaN and ±inf (at any depth) become null: strict JSON readers reject bare
    NaN, and Python's json writes it unless told not to. ``kwargs`` go to ``json.dumps``
    (``indent``, ``ensure_ascii``, ``default``: what it returns is cleaned too); a non-finite
    number that still gets through is a ValueError, never a file that is not JSON."""
    default = kwargs.pop("default", None)
    if default is not None:
        kwargs["default"] = lambda o: finite_json(default(o))
    return json.dumps(finite_json(obj), allow_nan=False, **kwargs)


@contextmanager
def naming(path: Path, *, always: bool = False) -> Iterator[None]:
    """An OSError raised inside names ``path`` when the system named no file (a write that hits
    a full disk reports only ENOSPC), so that ``agpo`` prints the file it was writing;
    ``always``: also when it named another one (a temp file the user never heard of)."""
    try:
        yield
    except OSError as e:
        if e.errno is not None and (always or e.filename is None):
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def replace_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (``replace_bytes``), UTF-8."""
    replace_bytes(path, text.encode("utf-8"))


def replace_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename): a reader or a crash
    sees the old file or the new one, never half of one. A failed write (a full disk) leaves
    the old file and no temp file behind, and its OSError names ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with naming(path, always=True):
            with tmp.open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
    except BaseException:
        with suppress(OSError):  # never created (a read-only folder): nothing to remove
            tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# one process per run directory


class DirLock:
    """An exclusive OS lock (``fcntl.flock``) on ``DIR/.agpo.lock`` while a run writes ``DIR``.

    The kernel drops the lock when the process ends, however it ends, so a crashed run never
    leaves a stale lock behind; within a process, ``with DirLock(...)`` (or ``release`` in a
    ``finally``) frees it the moment its owner fails. ``what`` names the flag in the refusal
    (``--resume``).
    """

    NAME = ".agpo.lock"
    _fd = -1  # no descriptor until one is open: `release` (and so `__del__`) then does nothing

    def __init__(self, folder: Path, what: str) -> None:
        import fcntl

        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / self.NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Released here, so `__del__` has nothing left to close: the number may already
            # belong to a file opened since, which a second close would take from its owner.
            self.release()
            raise UserError(f"{what} {folder}: another agpo process is writing this directory "
                            f"(it holds {self.path}); wait for it to end or stop it") from None

    @classmethod
    def empty(cls, folder: Path) -> bool:
        """True for a folder that is absent or holds nothing but the lock file (a new run may
        go there)."""
        return not folder.exists() or all(p.name == cls.NAME for p in folder.iterdir())

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # A lock nobody holds any more is dropped; only a fallback: a caught exception's traceback
    # keeps its owner's frames alive, so owners release in `with` or `finally`.
    __del__ = release


# ---------------------------------------------------------------------------------------------
# run environment


def resolve_device(spec: str) -> torch.device:
    """'auto': this process's GPU (LOCAL_RANK under torchrun) when there is one, else the CPU."""
    import torch

    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(spec)


def use_threads(threads: int, flag: str) -> str | None:
    """Set torch's CPU threads to ``threads`` (0: leave torch's default, one per core) and return
    a warning when the machine's cores are already busy (None otherwise).

    An OpenMP thread that reaches a barrier before its descheduled partner spins instead of
    sleeping, so two threads on two busy cores waste most of their time: agpo's sampler measured
    1.7 tokens/s with 2 threads against 54 with 1 on a 2-core machine running two other jobs
    (and 37 with OMP_WAIT_POLICY=PASSIVE)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    n, cores = torch.get_num_threads(), os.cpu_count() or 1
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"  # waiting threads sleep
    if n < 2 or passive or not hasattr(os, "getloadavg"):
        return None
    load = os.getloadavg()[0]
    if load + n <= cores + 0.5:
        return None
    return (f"the machine is busy (load average {load:.1f} on {cores} cores) and this process runs "
            f"{n} torch threads: OpenMP threads that wait for a descheduled partner spin, and "
            f"sampling has run 30× slower that way; give {flag} 1 (or set OMP_WAIT_POLICY=PASSIVE)")


def env_info(device: torch.device, *, seed: int, world_size: int = 1) -> dict[str, Any]:
    """The env.json record: versions, git SHA and a hardware summary without the hostname, so
    that a run directory can be shared as it is."""
    import torch

    import agpo

    return {
        "agpo": agpo.__version__,
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "packages": {p: _version(p) for p in ENV_PACKAGES},
        "python": platform.python_version(),
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "world_size": world_size,
    }


def _git(*args: str) -> str | None:
    """stdout of a git command run in agpo's own folder; None without git or outside a checkout."""
    try:
        res = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 else None


def git_sha() -> str | None:
    """HEAD of the checkout agpo is imported from; None for an installed wheel or without git."""
    out = _git("rev-parse", "HEAD")
    return (out.strip() or None) if out is not None else None


def git_dirty() -> bool | None:
    """Whether tracked files of that checkout differ from HEAD (then the SHA alone does not
    name the code that ran); None where git_sha is None."""
    out = _git("status", "--porcelain", "--untracked-files=no")
    return bool(out.strip()) if out is not None else None


def cpu_name() -> str | None:
    """The processor's model name: results that pretrain and train for many steps depend on
    its floating-point rounding."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _version(pkg: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None
