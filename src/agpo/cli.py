"""The ``agpo`` command. Each subcommand lives next to the stage it belongs to and is imported
only when called, so ``agpo --help`` and ``agpo passk`` start without importing torch.

Every subcommand is a ``main(argv: list[str]) -> int`` whose flags are tyro's spelling of its
config dataclass; ``UserError`` becomes one ``error: ...`` line and exit code 2, an error of
the file system (``OSError``: a full disk, a read-only folder) one line naming the file and exit
code 1; output cut short by its reader (``agpo ... | head``) ends quietly. ``kill PID``
(SIGTERM) stops a command as Ctrl-C does: worker processes ended, records written, one line
saying how to continue.
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sys
import threading
from types import FrameType

from agpo.errors import UserError

# name → (module, summary). The module defines ``main(argv) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("agpo.train.cli", "a training run into --out DIR (or --resume DIR)"),
    "eval": ("agpo.eval.cli", "sample n per problem, verify, write samples.jsonl and passk.json"),
    "passk": ("agpo.eval.passk_cli", "pass@k table from any samples.jsonl"),
    "verify": ("agpo.rewards.cli", "one verdict row per (gold, pred) row"),
    "report": ("agpo.eval.report_cli", "HTML report over run and/or eval directories"),
    "demo": ("agpo.apps.testbed.demo", "the embedded default: testbed, methods compared, report"),
    "testbed": ("agpo.apps.testbed.cli", "{build,evidence}: the built-in testbed"),
    "evidence": ("agpo.apps.evidence.cli", "methods × seeds on any model and task, with intervals"),
    "relevance": (
        "agpo.apps.relevance.cli",
        "{stats,train,annotate,distill,evaluate,demo}: search-ads relevance annotation",
    ),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items())
    return (
        "usage: agpo COMMAND [flags]   (agpo COMMAND --help documents every flag)\n\n"
        "RL with verifiable rewards: group-policy methods and the reasoning boundary.\n\n"
        f"commands:\n{rows}\n"
    )


def _terminated(signum: int, frame: FrameType | None) -> None:
    # The default action kills at once: a worker pool's semaphores leak (the resource tracker
    # then warns) and nothing gets to write its last record; Ctrl-C's path does both.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # Only where SIGTERM is ours to handle: the main thread, no handler of an embedding program.
    own = (threading.current_thread() is threading.main_thread()
           and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    if own:
        signal.signal(signal.SIGTERM, _terminated)
    try:
        return _main(argv)
    finally:
        if own:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _main(argv: list[str] | None) -> int:
    try:
        try:
            return _dispatch(sys.argv[1:] if argv is None else argv)
        finally:
            sys.stdout.flush()  # a reader that went away (`| head`) shows here, not at exit
    except BrokenPipeError:
        # The Python docs' recipe: point stdout at devnull so the interpreter's own flush at
        # exit cannot fail again, and leave quietly (a closed pipe is not an error of ours).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        from agpo import __version__

        print(f"agpo {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise
    except OSError as e:
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to continue where it stopped (a training "
              "run: agpo train --resume DIR)", file=sys.stderr)
        return 130


def os_error_line(e: OSError) -> str:
    """One line for an error of the file system (a full disk, a read-only or missing folder, a
    broken link): the file, what happened and what to do, instead of a traceback."""
    where = str(e.filename) if e.filename is not None else "(a file the system did not name)"
    if e.filename2 is not None:
        where += f" → {e.filename2}"
    what = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{where}: {what}; free some space and re-run the same command: a training run "
                "(agpo train --resume DIR), an eval, a demo or an annotation continues from what "
                "it had written")
    path = str(e.filename) if e.filename is not None else None
    if path is not None and os.path.islink(path) and not os.path.exists(path):
        return (f"{where}: a symbolic link to {os.readlink(path)!r}, which does not exist; "
                "remove the link or give another path")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}: {what}; give a path this user can write"
    return f"{where}: {what}"


if __name__ == "__main__":
    raise SystemExit(main())
