"""``agpo train --config FILE --out DIR [--section.field value ...]`` and ``agpo train --resume DIR``.

--config, --out and --resume are read here; every other flag is tyro's spelling of a RunConfig
field (``--algo.advantage agpo_asym``). On --resume the run's own config.yaml is the base, and
flags may still override it (e.g. ``--train.steps 200`` to extend a finished run).
"""

from __future__ import annotations

import os
from pathlib import Path

from agpo.errors import UserError
from agpo.train.config import flag_fields, load_config
from agpo.train.setup import require_new_out, require_run_dir

_OWN = ("--config", "--out", "--resume")


def main(argv: list[str]) -> int:
    own, rest = _split(argv)
    if "-h" in rest or "--help" in rest:
        load_config(None, rest)  # tyro prints the help and exits
    if own.get("--resume"):
        if own.get("--out") or own.get("--config"):
            raise UserError("--resume DIR continues a run with its own config: drop --out/--config")
        run_dir = Path(own["--resume"])
        require_run_dir(run_dir)
        # complete: a cut or emptied config.yaml must not fall back to defaults
        cfg, resume = load_config(run_dir / "config.yaml", rest, complete=True), True
    else:
        if not own.get("--out"):
            raise UserError("--out DIR is required (the run directory), or --resume DIR")
        run_dir = Path(own["--out"])
        require_new_out(run_dir)
        cfg, resume = load_config(own.get("--config"), rest), False
    from agpo.train.loop import train

    out = train(cfg, run_dir, resume=resume, flags=flag_fields(rest), say=print)
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {out}")
    return 0


def _split(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Pull --config/--out/--resume (``--x V`` or ``--x=V``) out of argv."""
    own: dict[str, str] = {}
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name in _OWN:
            if not eq:
                value = next(it, "")
                if not value or value.startswith("--"):
                    raise UserError(f"{name} needs a value")
            own[name] = value
        else:
            rest.append(arg)
    return own, rest
