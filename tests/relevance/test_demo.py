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
    assert set(results["teachers"]) == {"warm start (no RL)", "grpo", "agpo_asym"}
    assert "human train only" in results["students"]
    for row in [*results["teachers"].values(), *results["students"].values()]:
        assert 0.0 <= row["human"]["macro_f1"] <= 1.0
    assert {"students.png", "teachers.png", "confusion.png"} <= {p.name for p in (out / "plots").iterdir()}
    assert "| human train only |" in capsys.readouterr().out
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
