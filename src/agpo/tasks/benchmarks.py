"""The math benchmarks by name: a local copy first, the Hugging Face hub through ``datasets`` when
one is reachable.

A local copy is looked up as ``$AGPO_DATA/<name>/<split>.{jsonl,json,parquet}`` (``AGPO_DATA``
defaults to ``~/.cache/agpo/data``), so an offline machine evaluates a named benchmark once its
file is placed there; any file in a public layout also works directly as ``--task FILE``.
The hub ids are the public copies in the layouts ``agpo.tasks.layouts`` reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agpo.errors import UserError
from agpo.tasks.base import FILE_SUFFIXES, TASKS, load_file
from agpo.tasks.layouts import records_to_items
from agpo.types import TaskItem


@dataclass(frozen=True)
class HubSource:
    """Where a benchmark lives on the hub; ``splits`` maps agpo's split to the hub's."""

    repo: str
    config: str | None = None
    splits: tuple[tuple[str, str], ...] = ()

    def hub_split(self, split: str) -> str:
        return dict(self.splits).get(split, split)


BENCHMARKS: dict[str, HubSource] = {
    "gsm8k": HubSource("openai/gsm8k", "main"),
    "math": HubSource("DigitalLearningGmbH/MATH-lighteval", "default"),
    "math500": HubSource("HuggingFaceH4/MATH-500"),
    "aime24": HubSource("HuggingFaceH4/aime_2024", splits=(("test", "train"),)),
    "aime25": HubSource("math-ai/aime25"),
    "amc23": HubSource("math-ai/amc23"),
    "olympiadbench": HubSource("Hothan/OlympiadBench", "OE_TO_maths_en_COMP",
                               splits=(("test", "train"),)),
    "minerva_math": HubSource("math-ai/minervamath"),
    "cmath": HubSource("weitianwen/cmath"),
    "agieval_math": HubSource("hails/agieval-math"),
    "agieval_sat_math": HubSource("hails/agieval-sat-math"),
    "agieval_aqua_rat": HubSource("hails/agieval-aqua-rat"),
}


def data_dir() -> Path:
    return Path(os.environ.get("AGPO_DATA", Path.home() / ".cache" / "agpo" / "data"))


def local_copy(name: str, split: str) -> Path | None:
    for suffix in FILE_SUFFIXES:
        path = data_dir() / name / f"{split}{suffix}"
        if path.exists():
            return path
    return None


def load_benchmark(name: str, split: str, limit: int | None = None) -> list[TaskItem]:
    """Problems of benchmark ``name`` (a local copy if present, else the hub); ``limit``: the
    first that many, the rest never read."""
    path = local_copy(name, split)
    if path is not None:
        return load_file(path, limit=limit)
    source = BENCHMARKS[name]
    try:
        import datasets

        ds = datasets.load_dataset(source.repo, source.config, split=source.hub_split(split))
    except Exception as e:  # offline, gated, renamed: all end in the same advice
        raise UserError(
            f"--task {name}: no local copy at {data_dir() / name / split}"
            f"{{{','.join(FILE_SUFFIXES)}}} and the hub copy {source.repo} could not be loaded "
            f"({type(e).__name__}: {str(e)[:200]}); pass the file itself with --task FILE"
        ) from None
    return records_to_items(enumerate(ds, 1), source=f"{source.repo}:{split}", meta={"task": name},
                            limit=limit)


def _register(name: str) -> None:
    @TASKS.register(name)
    def load(split: str, limit: int | None = None) -> list[TaskItem]:
        return load_benchmark(name, split, limit)

    load.__doc__ = f"{name}: hub {BENCHMARKS[name].repo} or $AGPO_DATA/{name}/<split>.jsonl"


for _name in BENCHMARKS:
    _register(_name)
