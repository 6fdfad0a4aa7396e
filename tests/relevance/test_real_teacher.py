"""The teacher path on a real LM: ``agpo relevance train --base smollm2-135m-instruct`` (the
built-in real model) → annotate, with the smallest budget that runs every stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agpo.apps.relevance.synthetic import write_world
from agpo.cli import main as agpo_main

TEMPLATE = ("Is the item relevant to the search query? Answer with one word: Exact, Substitute, "
            "Complement or Irrelevant.\nquery: {query}\nitem: {title}\nlabel:")


@pytest.mark.slow
def test_smollm2_teacher_trains_and_annotates(smollm2_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(2)
    # the session fixture converted the model under <cache>/models/<name>-<version>: point the
    # built-in name at that cache so --base resolves it by name, as a user types it
    monkeypatch.setenv("AGPO_CACHE", str(smollm2_dir.parent.parent))
    files = write_world(tmp_path / "w", {"train": 1, "test": 1, "pool": 1}, per_query=2)
    lab, pool = str(files["labelled"]), str(files["pool"])
    out = tmp_path / "teacher"
    assert agpo_main(["relevance", "train", "--data", lab, "--out", str(out),
                      "--base", "smollm2-135m-instruct", "--template", TEMPLATE,
                      "--rl.steps", "1", "--rl.prompts-per-step", "2", "--rl.group-size", "2",
                      "--rl.lr", "1e-6", "--rl.max-new-tokens", "4"]) == 0
    metrics = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and 0.0 <= metrics[0]["reward/mean"] <= 1.0
    ann = tmp_path / "ann.jsonl"
    assert agpo_main(["relevance", "annotate", "--data", pool, "--model", str(out / "rl"),
                      "--out", str(ann), "--cfg.k", "2", "--cfg.batch-pairs", "2",
                      "--cfg.max-new-tokens", "4", "--cfg.template", TEMPLATE]) == 0
    rows = [json.loads(line) for line in ann.read_text().splitlines()]
    assert len(rows) == 2 and all(r["label"] in {"E", "S", "C", "I", None} for r in rows)
    assert all(sum(r["votes"].values()) + r["unparsed"] == 2 for r in rows)
