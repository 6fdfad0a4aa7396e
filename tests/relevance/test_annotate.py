"""Annotation: self-consistency votes, and resume == uninterrupted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agpo.apps.relevance import data
from agpo.apps.relevance.annotate import AnnotateConfig, annotate, vote
from agpo.apps.relevance.labels import ESCI
from agpo.errors import UserError


def test_vote_hand_worked() -> None:
    v = vote(["S", "E", "S", "S", None], ESCI)
    # winner S with 3 of 5; agreement = (3·2 + 1·0) / (5·4) = 0.3
    assert (v["label"], v["confidence"], v["agreement"], v["unparsed"]) == ("S", 0.6, 0.3, 1)
    assert vote(["C", "E"], ESCI)["label"] == "E"  # tie → the more relevant label
    assert vote([None, None], ESCI)["label"] is None


@pytest.fixture
def pool(tmp_path: Path) -> list[data.Pair]:
    f = tmp_path / "pool.jsonl"
    rows = [{"query": f"tea {i}", "title": "green tea", "query_id": f"q{i}", "product_id": f"p{i}",
             "example_id": i} for i in range(7)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data.load(f).pairs


def test_resume_equals_uninterrupted(tiny_model_dir: Path, pool: list[data.Pair], tmp_path: Path) -> None:
    cfg = AnnotateConfig(k=3, batch_pairs=3, max_new_tokens=2)
    whole = annotate(tiny_model_dir, pool, tmp_path / "whole.jsonl", ESCI, cfg, progress=False)
    part = tmp_path / "part.jsonl"
    annotate(tiny_model_dir, pool, part, ESCI, cfg, progress=False, max_batches=1)
    assert len(part.read_text().splitlines()) == 3
    with part.open("a") as f:
        f.write('{"query_id": "q3", "prod')  # a write torn by the kill
    resumed = annotate(tiny_model_dir, pool, part, ESCI, cfg, progress=False)
    assert resumed == whole
    assert [(r["query_id"], r["product_id"], r["example_id"]) for r in whole] == [
        (f"q{i}", f"p{i}", i) for i in range(7)]
    assert {"label", "confidence", "agreement", "votes", "unparsed"} <= set(whole[0])


def test_resume_refuses_another_pool(tiny_model_dir: Path, pool: list[data.Pair], tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    out.write_text(json.dumps({"query_id": "other", "product_id": "x"}) + "\n")
    with pytest.raises(UserError, match="a.jsonl:1: keys"):
        annotate(tiny_model_dir, pool, out, ESCI, AnnotateConfig(k=1, batch_pairs=1), progress=False)


def test_a_foreign_out_file_is_refused_untouched(tiny_model_dir: Path, pool: list[data.Pair],
                                                 tmp_path: Path) -> None:
    out = tmp_path / "notes.jsonl"
    text = '{"note": "mine"}\nnot json at all\n{"note": "half a line'
    out.write_text(text)
    with pytest.raises(UserError, match=r"notes\.jsonl:2: not valid JSON"):
        annotate(tiny_model_dir, pool, out, ESCI, AnnotateConfig(k=1, batch_pairs=1), progress=False)
    out.write_text('{"query_id": "other", "product_id": "x"}\n{"note": "half a line')
    with pytest.raises(UserError, match=r"notes\.jsonl:1: keys"):
        annotate(tiny_model_dir, pool, out, ESCI, AnnotateConfig(k=1, batch_pairs=1), progress=False)
    # Refused before anything was written: its last line, torn or not, is the user's.
    assert out.read_text() == '{"query_id": "other", "product_id": "x"}\n{"note": "half a line'
