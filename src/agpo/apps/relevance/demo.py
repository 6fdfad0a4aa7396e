"""``agpo relevance demo``: the whole pipeline on the synthetic world, end to end on a CPU.

  world      labelled (train: the small human-rated set; test: held-out human labels) + pool
  teachers   warm start on the human train set → RL with GRPO and with AGPO (agpo_asym), same
             base, seed and budget; the warm-start model is kept as a third, RL-free teacher
  annotate   every teacher labels the pool (k samples per pair, majority vote) and the test set
             (its agreement with held-out human labels)
  students   one per label source: human train only; human train + each teacher's pool labels;
             human train + the pool's own human labels (an oracle no real pool has)
  report     table.md, results.json, plots/*.png — scored against held-out human labels and,
             because the world is synthetic, against the noise-free rule labels too
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agpo.apps.relevance import data, synthetic
from agpo.apps.relevance.annotate import AnnotateConfig, annotate
from agpo.apps.relevance.metrics import classification_report
from agpo.apps.relevance.student import StudentConfig, build_student
from agpo.apps.relevance.teacher import (TeacherRLConfig, WarmStartConfig, to_tasks,
                                         train_teacher, warm_start)
from agpo.errors import UserError


@dataclass(frozen=True)
class WorldConfig:
    """Size and noise of the synthetic world."""

    train_queries: int = 120
    """Queries of the small human-labelled training set (8 pairs each by default)."""
    test_queries: int = 60
    """Queries of the held-out human-labelled test set."""
    pool_queries: int = 300
    """Queries of the unlabelled pool the teachers annotate."""
    per_query: int = 8
    """Candidate items per query."""
    noise: float = 0.2
    """Probability that a human rater's label differs from the rule label."""
    seed: int = 0
    """World seed."""


@dataclass(frozen=True)
class DemoConfig:
    """Students on human labels vs on GRPO- and AGPO-teacher labels, on the synthetic world."""

    out: Path = Path("runs/relevance_demo")
    """Output folder (world/, teachers/, annotations/, table.md, results.json, plots/)."""
    world: WorldConfig = field(default_factory=WorldConfig)
    warm: WarmStartConfig = field(default_factory=WarmStartConfig)
    rl: TeacherRLConfig = field(default_factory=TeacherRLConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    min_confidence: float = 0.0
    """Students use only pool labels whose teacher confidence (share of the k votes) is at
    least this (0: every parsed label)."""
    methods: tuple[str, ...] = ("grpo", "agpo_asym")
    """RL methods of the teachers compared (advantage estimator names)."""
    tiny: bool = False
    """A seconds-long smoke run (tiny world and budgets); its numbers mean nothing."""
    overwrite: bool = False
    """Replace an existing --out folder."""
    progress: bool = True
    """Show progress bars."""

    def resolved(self) -> DemoConfig:
        if not self.tiny:
            return self
        return replace(
            self,
            world=replace(self.world, train_queries=8, test_queries=4, pool_queries=8, per_query=4),
            warm=replace(self.warm, steps=10, batch_size=8, hidden=32),
            rl=replace(self.rl, steps=2, prompts_per_step=4, group_size=4),
            annotate=replace(self.annotate, k=2, batch_pairs=16),
            student=replace(self.student, epochs=2),
        )


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the demo into ``cfg.out``; returns results.json's content."""
    cfg = cfg.resolved()
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        if not cfg.overwrite:
            raise UserError(f"--out {out}: not empty; pass --overwrite True or another folder")
        shutil.rmtree(out)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    w = cfg.world
    folders = synthetic.write_world(
        out / "world", {"train": w.train_queries, "test": w.test_queries, "pool": w.pool_queries},
        per_query=w.per_query, noise=w.noise, seed=w.seed)
    labelled, pool = data.load(folders["labelled"]), data.load(folders["pool"])
    scheme = labelled.scheme
    train, test = labelled.split("train"), labelled.split("test")

    teachers = {"warm start (no RL)": warm_start(
        train, scheme, out / "teachers" / "warm_start", cfg.warm, progress=cfg.progress,
        vocab_pairs=labelled.pairs + pool.pairs)}
    timings["warm_start_s"] = time.perf_counter() - t0
    for method in cfg.methods:
        t = time.perf_counter()
        teachers[method] = train_teacher(
            teachers["warm start (no RL)"], to_tasks(train, scheme), scheme,
            out / "teachers" / method, replace(cfg.rl, advantage=method), progress=cfg.progress)
        timings[f"rl_{method}_s"] = time.perf_counter() - t

    t = time.perf_counter()
    teacher_rows, pool_labels = {}, {}
    for name, model_dir in teachers.items():
        slug = name.split(" ")[0]
        on_test = annotate(model_dir, test, out / "annotations" / f"{slug}_test.jsonl", scheme,
                           cfg.annotate, progress=cfg.progress)
        on_pool = annotate(model_dir, pool.pairs, out / "annotations" / f"{slug}_pool.jsonl",
                           scheme, cfg.annotate, progress=cfg.progress)
        teacher_rows[name] = _score(test, [r["label"] for r in on_test], scheme.labels)
        teacher_rows[name]["pool_vs_human"] = _score(
            pool.pairs, [r["label"] for r in on_pool], scheme.labels)["human"]
        teacher_rows[name]["mean_confidence"] = sum(r["confidence"] for r in on_pool) / len(on_pool)
        pool_labels[name] = [r["label"] if r["confidence"] >= cfg.min_confidence else None
                             for r in on_pool]
    timings["annotate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    sources = {"human train only": ([], [])}
    for name, labels in pool_labels.items():
        kept = [(p, lab) for p, lab in zip(pool.pairs, labels) if lab is not None]
        sources[f"+ pool labelled by {name}"] = ([p for p, _ in kept], [lab for _, lab in kept])
    human_pool = [p for p in pool.pairs if p.label is not None]
    sources["+ pool human labels (oracle)"] = (human_pool, [p.label for p in human_pool])
    student_rows = {}
    for name, (extra_pairs, extra_labels) in sources.items():
        student = build_student(scheme.labels, cfg.student)
        student.fit(train + extra_pairs, [p.label for p in train] + extra_labels)
        student_rows[name] = _score(test, student.predict(test), scheme.labels)
        student_rows[name]["train_pairs"] = len(train) + len(extra_pairs)
    timings["students_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0

    results = {
        "config": _plain(asdict(cfg)),
        "data": {"train": len(train), "test": len(test), "pool": len(pool.pairs),
                 "report": labelled.report.to_json()},
        "teachers": teacher_rows,
        "students": student_rows,
        "student_backbone": getattr(student, "backbone", cfg.student.kind),
        "timings": timings,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(render_table(results))
    plot(results, out / "plots")
    return results


def _score(pairs: list[data.Pair], pred: list[str | None], labels: tuple[str, ...]) -> dict[str, Any]:
    human = classification_report([p.label for p in pairs], pred, labels)
    truth = classification_report([p.meta.get("rule_label") for p in pairs], pred, labels)
    return {"human": human, "truth": truth}


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return str(x) if isinstance(x, Path) else x


def render_table(results: dict[str, Any]) -> str:
    """Markdown tables: teachers' agreement and students' scores on the held-out test set."""
    labels = next(iter(results["students"].values()))["human"]["labels"]
    head = ("| {} | acc (human) | macro-F1 (human) | micro-F1 | " + " | ".join(f"F1 {lab}" for lab in labels)
            + " | acc (rule labels) | macro-F1 (rule labels) |")
    sep = "|---" * (7 + len(labels) - 2) + "|---|"

    def row(name: str, r: dict[str, Any]) -> str:
        h, t = r["human"], r["truth"]
        cls = " | ".join(f"{h['per_class_f1'][lab]:.3f}" for lab in labels)
        return (f"| {name} | {h['accuracy']:.3f} | {h['macro_f1']:.3f} | {h['micro_f1']:.3f} | {cls} | "
                f"{t['accuracy']:.3f} | {t['macro_f1']:.3f} |")

    d = results["data"]
    lines = [f"Held-out test: {d['test']} human-labelled pairs; human train {d['train']}; pool {d['pool']}.",
             "", "Teachers (k-sample majority vote) vs held-out labels:", "",
             head.format("teacher"), sep]
    lines += [row(n, r) for n, r in results["teachers"].items()]
    lines += ["", f"Students ({results['student_backbone']}) vs held-out labels:", "",
              head.format("student trained on"), sep]
    lines += [row(n, r) for n, r in results["students"].items()]
    secs = results["timings"]["total_s"]
    lines += ["", f"Wall time: {secs:.0f} s."]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], folder: Path) -> None:
    """Bar charts of accuracy and macro-F1 (students and teachers) and the confusion matrix of
    every student."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for group in ("students", "teachers"):
        rows = results[group]
        names = list(rows)
        fig, ax = plt.subplots(figsize=(9, 0.7 * len(names) + 2))
        ys = range(len(names))
        for offset, (key, gold) in enumerate([("accuracy", "human"), ("macro_f1", "human"),
                                              ("macro_f1", "truth")]):
            vals = [rows[n][gold][key] for n in names]
            ax.barh([y + 0.27 * offset for y in ys], vals, height=0.27,
                    label=f"{key} vs {'human' if gold == 'human' else 'rule'} labels")
        ax.set_yticks([y + 0.27 for y in ys], names)
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=8)
        ax.set_title(f"{group} on the held-out test set")
        fig.tight_layout()
        fig.savefig(folder / f"{group}.png", dpi=100)
        plt.close(fig)
    students = results["students"]
    fig, axes = plt.subplots(1, len(students), figsize=(3 * len(students), 3.2))
    for ax, (name, r) in zip(axes if len(students) > 1 else [axes], students.items()):
        h = r["human"]
        ax.imshow(h["confusion"], cmap="Blues")
        ax.set_xticks(range(len(h["labels"])), h["labels"])
        ax.set_yticks(range(len(h["labels"])), h["labels"])
        ax.set_title(name, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("human")
    fig.tight_layout()
    fig.savefig(folder / "confusion.png", dpi=100)
    plt.close(fig)
