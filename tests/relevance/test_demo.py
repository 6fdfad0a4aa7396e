"""The tiny-budget end-to-end demo and the train → annotate → distill → evaluate commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agpo.apps.relevance.synthetic import write_world
from agpo.cli import main as agpo_main


@pytest.mark.slow
def test_tiny_demo_through_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "demo"
    assert agpo_main(["relevance", "demo", "--tiny", "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["teachers"]) == {"warm start (no RL)", "grpo", "agpo_asym", "asym_grpo"}
    assert {"human train only", "+ pool, human rater labels",
            "+ pool, noise-free labels (oracle)"} <= set(results["students"])
    for row in [*results["teachers"].values(), *results["students"].values()]:
        assert 0.0 <= row["human"]["macro_f1"] <= 1.0
        assert {"truth", "rare_truth", "ci95", "seeds"} <= set(row)
    assert set(results["preconditions"]) == {"oracle_gain", "teacher_knowledge", "rater_noise"}
    assert {"students.png", "teachers.png", "confusion.png"} <= {p.name for p in (out / "plots").iterdir()}
    printed = capsys.readouterr().out
    assert "| human train only |" in printed and "oracle_gain" in printed
    # a non-empty --out is refused with a clear line (exit 2), not overwritten
    assert agpo_main(["relevance", "demo", "--tiny", "--no-progress", "--out", str(out)]) == 2


@pytest.mark.slow
def test_pipeline_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    folders = write_world(tmp_path / "w", {"train": 4, "test": 3, "pool": 3}, per_query=4)
    lab, pool = str(folders["labelled"]), str(folders["pool"])
    teacher = tmp_path / "teacher"
    assert agpo_main(["relevance", "train", "--data", lab, "--out", str(teacher), "--vocab-data", pool,
                      "--warm.steps", "5", "--warm.hidden", "32", "--rl.steps", "1",
                      "--rl.prompts-per-step", "4", "--rl.group-size", "2"]) == 0
    ann = tmp_path / "ann.jsonl"
    assert agpo_main(["relevance", "annotate", "--data", pool, "--model", str(teacher / "rl"),
                      "--out", str(ann), "--cfg.k", "2", "--cfg.batch-pairs", "8"]) == 0
    assert len(ann.read_text().splitlines()) == 12
    student = tmp_path / "student"
    assert agpo_main(["relevance", "distill", "--data", pool, "--labels", str(ann), "--human", lab,
                      "--out", str(student), "--student.epochs", "2"]) == 0
    capsys.readouterr()
    assert agpo_main(["relevance", "evaluate", "--data", lab, "--student", str(student), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 12 and len(report["confusion"]) == 4
    assert agpo_main(["relevance", "evaluate", "--data", pool, "--split", "", "--labels", str(ann)]) == 0
    assert "macro-F1" in capsys.readouterr().out


def test_t_interval_and_seed_mean_by_hand() -> None:
    from agpo.apps.relevance.demo import aggregate, mean_t_interval

    # mean 0.6, sd 0.1, half-width t(0.975, 2) · sd / √3 = 4.303 · 0.0577 = 0.2484
    m, lo, hi = mean_t_interval([0.5, 0.6, 0.7])
    assert (round(m, 4), round(lo, 4), round(hi, 4)) == (0.6, 0.3516, 0.8484)
    assert mean_t_interval([0.4]) == (0.4, 0.4, 0.4)
    rep = lambda acc: {"accuracy": acc, "macro_f1": acc / 2, "micro_f1": acc,  # noqa: E731
                       "per_class_f1": {"E": acc}, "confusion": [[1]], "labels": ["E"], "n": 4}
    agg = aggregate([{"human": rep(0.5), "train_pairs": 10}, {"human": rep(0.7), "train_pairs": 10}])
    assert agg["human"]["accuracy"] == 0.6 and agg["human"]["confusion"] == [[2]] and agg["human"]["n"] == 8
    # two seeds: t(0.975, 1) 12.706 · sd 0.1414 / √2 = 1.2706 → [0.6 − 1.27, 0.6 + 1.27]
    lo, hi = agg["ci95"]["human_accuracy"]
    assert abs(lo - (0.6 - 1.2706)) < 1e-3 and abs(hi - (0.6 + 1.2706)) < 1e-3
    assert agg["train_pairs"] == 10 and len(agg["seeds"]) == 2
