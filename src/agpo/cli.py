"""The ``agpo`` command. Each subcommand lives next to the stage it belongs to and is imported
only when called, so ``agpo --help`` and ``agpo passk`` start without importing torch.

Every subcommand is a ``main(argv: list[str]) -> int`` whose flags are tyro's spelling of its
config dataclass; ``UserError`` becomes one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
    except KeyboardInterrupt:
        print("interrupted; the run can be resumed (see --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
