"""``agpo relevance {stats,train,annotate,distill,evaluate,demo}``.

  stats     what a dataset folder holds: examples, products, join misses, labels, splits, locales
  train     a teacher: (tiny warm start, or your causal LM) → RL on the labelled pairs
  annotate  label a pool with a teacher, k samples per pair; rerun the same command to resume
  distill   train a student on teacher labels (optionally plus the human training set)
  evaluate  score a student or an annotation file against human labels
  demo      the whole pipeline on the synthetic world (students on human vs GRPO/AGPO labels)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agpo.apps.relevance.annotate import AnnotateConfig
from agpo.apps.relevance.student import StudentConfig
from agpo.apps.relevance.teacher import TEMPLATE, TeacherRLConfig, WarmStartConfig
from agpo.errors import UserError
from agpo.io import dumps_finite, finite_number, read_jsonl

if TYPE_CHECKING:
    from agpo.apps.relevance.data import DataReport, Dataset, Pair


@dataclass(frozen=True)
class DataArgs:
    """Which pairs to read."""

    data: Path
    """ESCI folder (*examples* + *products*, parquet or csv), WANDS folder, or a .jsonl file."""
    scheme: str = "esci"
    """Label scheme: esci (E/S/C/I), 3level (exact/partial/irrelevant) or graded (1-5)."""
    version: str = "all"
    """ESCI only: small | large | all (rows whose small_version / large_version is 1)."""
    split: str = ""
    """Keep only this split ('' : every pair)."""

    def load(self, split: str | None = None, *, empty_ok: bool = False,
             ) -> tuple[Dataset, list[Pair]]:
        """The dataset and its pairs in ``split`` (default ``--split``); no pair is an error
        that says where the rows went (join misses, ``--version``), unless ``empty_ok``."""
        from agpo.apps.relevance import data

        if self.version not in {"small", "large", "all"}:
            raise UserError(f"--version {self.version!r}: use small, large or all")
        try:
            ds = data.load(self.data, self.scheme, self.version)
        except KeyError as e:
            raise UserError(f"--scheme: {e.args[0]}") from None
        want = self.split if split is None else split
        pairs = ds.split(want) if want else ds.pairs
        if not pairs and not empty_ok:
            raise UserError(f"{self.data}: no pairs" + (
                f" in split {want!r} (splits: {ds.report.splits})" if ds.pairs else
                f": {lost(ds.report, self.version)}"))
        return ds, pairs


def lost(r: DataReport, version: str) -> str:
    """Where the examples of a dataset that gave no pair went (a DataReport's counts)."""
    parts = [f"{r.examples} example(s) read"]
    if r.filtered:
        parts.append(f"{r.filtered} left out by --version {version}")
    if r.join_misses:
        parts.append(f"{r.join_misses} missed the join (no product row with their product id"
                     f"{' and locale' if r.format == 'esci' else ''}: check the products file)")
    return ", ".join(parts)


@dataclass(frozen=True)
class StatsArgs(DataArgs):
    json: bool = False
    """Print one JSON object (keys examples, products, join_misses, labels, splits, locales, ...)."""


@dataclass(frozen=True)
class TrainArgs(DataArgs):
    split: str = "train"
    """Split of the labelled pairs the teacher trains on ('' : every pair)."""
    out: Path = Path("runs/relevance_teacher")
    """Output folder (warm_start/ and the RL run directory rl/)."""
    base: str = "tiny"
    """'tiny' (pretrain a tiny Llama on --corpus, then warm-start it on these pairs), a built-in
    model (smollm2-135m-instruct) or a from_pretrained causal LM folder."""
    vocab_data: Path | None = None
    """tiny only: more text for the word vocabulary (the pool you will annotate)."""
    corpus: Path | None = None
    """tiny only: an unlabelled text corpus (one document per line) to pretrain on first, e.g.
    the synthetic world's corpus.txt."""
    template: str = TEMPLATE
    """Prompt template over {query} {title} {description} {bullets} {brand} {color}."""
    warm: WarmStartConfig = field(default_factory=WarmStartConfig)
    rl: TeacherRLConfig = field(default_factory=TeacherRLConfig)


@dataclass(frozen=True)
class AnnotateArgs(DataArgs):
    model: Path = Path("runs/relevance_teacher/rl")
    """The teacher: a from_pretrained folder with its tokenizer, or a run directory (its latest
    checkpoint is used)."""
    out: Path = Path("annotations.jsonl")
    """Output jsonl; rows already there are kept and the run continues after them."""
    cfg: AnnotateConfig = field(default_factory=AnnotateConfig)


@dataclass(frozen=True)
class DistillArgs(DataArgs):
    labels: Path = Path("annotations.jsonl")
    """Teacher annotations (from annotate) of the pairs in --data."""
    human: Path | None = None
    """Optional human-labelled folder/file whose --human-split pairs are added to the training set."""
    human_split: str = "train"
    """Split of --human to add."""
    min_confidence: float = 0.0
    """Drop annotations whose confidence (share of the k votes) is below this."""
    out: Path = Path("runs/relevance_student")
    """Student folder (student.json + safetensors)."""
    student: StudentConfig = field(default_factory=StudentConfig)


@dataclass(frozen=True)
class EvaluateArgs(DataArgs):
    split: str = "test"
    """Split holding the held-out human labels ('' : every pair)."""
    student: Path | None = None
    """A student folder from distill."""
    labels: Path | None = None
    """Or an annotation file (scores a teacher's labels)."""
    json: bool = False
    """Print the full report as JSON."""


def _stats(a: StatsArgs) -> int:
    # Counting is what stats is for: a dataset whose every row misses the join is shown with
    # its counts (join_misses above all), not refused as "no pairs".
    ds, pairs = a.load(split="", empty_ok=True)
    if not pairs:
        print(f"warning: {a.data}: no pairs: {lost(ds.report, a.version)}", file=sys.stderr)
    report = ds.report.to_json()
    if a.json:
        print(dumps_finite(report))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{a.data} ({report['format']}, scheme {a.scheme})")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("examples", "products", "join_misses", "missing_labels", "filtered"):
        table.add_row(key, str(report[key]))
    for group in ("labels", "unknown_labels", "splits", "locales", "empty_fields"):
        for value, n in report[group].items():
            table.add_row(f"{group}: {value or '(empty)'}", str(n))
    Console().print(table)
    return 0


def _train(a: TrainArgs) -> int:
    from agpo.apps.relevance.teacher import to_tasks, train_teacher, warm_start

    ds, pairs = a.load()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.base == "tiny":
        extra = DataArgs(a.vocab_data, a.scheme).load(split="")[1] if a.vocab_data else []
        if a.corpus is not None and not a.corpus.is_file():
            raise UserError(f"--corpus {a.corpus}: no such file")
        corpus = a.corpus.read_text(encoding="utf-8").splitlines() if a.corpus else []
        base = warm_start(pairs, ds.scheme, a.out / "warm_start", a.warm, a.template,
                          vocab_pairs=list(pairs) + list(extra), corpus=corpus)
    else:
        from agpo.models import resolve

        base = resolve(a.base, flag="--base")
    final = train_teacher(base, to_tasks(pairs, ds.scheme, a.template), ds.scheme, a.out / "rl", a.rl)
    print(f"teacher: {final}")
    return 0


def _annotate(a: AnnotateArgs) -> int:
    from agpo.apps.relevance.annotate import annotate
    from agpo.apps.relevance.teacher import latest_checkpoint

    ds, pairs = a.load()
    model = a.model
    if not (model / "config.json").exists():
        if not (model / "checkpoints").is_dir():
            raise UserError(f"--model {model}: neither a from_pretrained folder nor a run directory")
        model = latest_checkpoint(model)
    rows = annotate(model, pairs, a.out, ds.scheme, a.cfg)
    print(f"{len(rows)} rows in {a.out}")
    return 0


def read_annotations(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(query_id, product_id) → annotation row."""
    if not path.is_file():
        raise UserError(f"--labels {path}: " + ("is a directory" if path.is_dir() else
                                                "no such file"))
    rows = {}
    for i, row in read_jsonl(path):
        keys = [row.get("query_id"), row.get("product_id")]
        if any(k is None or isinstance(k, dict | list) for k in keys):
            raise UserError(f"{path}:{i}: not an annotation row (query_id and product_id: "
                            "text or numbers)")
        finite_number(row, "confidence", path, i, optional=True)
        rows[(str(keys[0]), str(keys[1]))] = row
    return rows


def _distill(a: DistillArgs) -> int:
    from agpo.apps.relevance.student import build_student, save_student

    ds, pairs = a.load()
    ann = read_annotations(a.labels)
    train, labels = [], []
    for p in pairs:
        row = ann.get((p.query_id, p.product_id))
        # A row without a confidence (not written by annotate) passes --min-confidence 0 only.
        if row and row.get("label") in ds.scheme.labels and \
                (row.get("confidence") or 0.0) >= a.min_confidence:
            train.append(p)
            labels.append(row["label"])
    if a.human is not None:
        human = DataArgs(a.human, a.scheme, a.version).load(split=a.human_split)[1]
        human = [p for p in human if p.label is not None]
        train += human
        labels += [p.label for p in human]
    if not train:
        raise UserError(f"--labels {a.labels}: no annotation matches a pair of --data {a.data}")
    student = build_student(ds.scheme.labels, a.student)
    student.fit(train, labels)
    save_student(student, a.out)
    print(f"student ({student.backbone}) trained on {len(train)} pairs → {a.out}")
    return 0


def _evaluate(a: EvaluateArgs) -> int:
    from agpo.apps.relevance.metrics import classification_report
    from agpo.apps.relevance.student import load_student

    ds, pairs = a.load()
    pairs = [p for p in pairs if p.label is not None]
    if (a.student is None) == (a.labels is None):
        raise UserError("pass exactly one of --student DIR or --labels FILE")
    if a.student is not None:
        pred = load_student(a.student).predict(pairs)
    else:
        ann = read_annotations(a.labels)
        pred = [ann.get((p.query_id, p.product_id), {}).get("label") for p in pairs]
    report = classification_report([p.label for p in pairs], pred, ds.scheme.labels)
    if a.json:
        print(dumps_finite(report))
        return 0
    print(f"n {report['n']}  accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}"
          f"  micro-F1 {report['micro_f1']:.3f}")
    print("per-class F1: " + "  ".join(f"{k} {v:.3f}" for k, v in report["per_class_f1"].items()))
    print("confusion (rows human, columns predicted; " + " ".join(report["labels"]) + "):")
    for row in report["confusion"]:
        print("  " + " ".join(f"{n:5d}" for n in row))
    return 0


def _demo(cfg: Any) -> int:
    import torch

    from agpo.apps.relevance.demo import run_demo

    # The tiny models gain nothing from more threads, and on a shared machine extra threads
    # only spin; one thread is also what the measured numbers used.
    torch.set_num_threads(1)
    results = run_demo(cfg)
    print((Path(cfg.out) / "table.md").read_text())
    print(f"results: {Path(cfg.out) / 'results.json'}, plots: {Path(cfg.out) / 'plots'}")
    return 0 if results else 1


def _commands() -> dict[str, tuple[type, Any, str]]:
    from agpo.apps.relevance.demo import RelevanceDemoConfig

    return {
        "stats": (StatsArgs, _stats, "counts of a dataset (labels, splits, locales, join misses)"),
        "train": (TrainArgs, _train, "train a teacher with agpo's RL trainer"),
        "annotate": (AnnotateArgs, _annotate, "label a pool with a teacher (resumable)"),
        "distill": (DistillArgs, _distill, "train a student on teacher labels"),
        "evaluate": (EvaluateArgs, _evaluate, "score a student or annotations against human labels"),
        "demo": (RelevanceDemoConfig, _demo,
                 "students on human vs GRPO/AGPO-teacher labels (synthetic world)"),
    }


def load_preset(cls: type, path: Path) -> Any:
    """A ``cls`` instance from a YAML of overrides (nested sections as mappings), type-checked
    by the run-config loader (``file:line: field`` on a bad value)."""
    import dataclasses

    import yaml

    from agpo.configs import from_yaml

    if path.is_dir():
        raise UserError(f"--config {path}: is a directory; give a YAML file")
    cfg = from_yaml(path, cls)
    if "data" in {f.name for f in dataclasses.fields(cls)}:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if "data" not in tree:
            raise UserError(f"{path}: data: required for this command")
    return cfg


def main(argv: list[str]) -> int:
    import tyro

    commands = _commands()
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in commands:
        rows = "\n".join(f"  {name:<9} {summary}" for name, (_, _, summary) in commands.items())
        print(f"usage: agpo relevance COMMAND [flags]\n\ncommands:\n{rows}")
        if argv and argv[0] not in {"-h", "--help"}:
            raise UserError(f"unknown relevance command {argv[0]!r}; valid: {', '.join(commands)}")
        return 0
    cls, fn, summary = commands[argv[0]]
    rest, default = list(argv[1:]), None
    if "--config" in rest:  # defaults < YAML < flags, as for agpo train
        i = rest.index("--config")
        if i + 1 == len(rest):
            raise UserError("--config: give a YAML file")
        default = load_preset(cls, Path(rest[i + 1]))
        del rest[i:i + 2]
    try:
        args = tyro.cli(cls, args=rest, default=default, prog=f"agpo relevance {argv[0]}",
                        description=summary + " (--config FILE: a YAML of overrides)")
    except ValueError as e:
        raise UserError(str(e)) from None
    return fn(args)
