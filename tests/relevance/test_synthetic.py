"""The synthetic world: rule labels by hand, and the ESCI reader reading what it wrote."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from agpo.apps.relevance import data
from agpo.apps.relevance.synthetic import Product, Query, rater, rule_label, write_world


def _p(ptype: str, brand: str = "nike", colour: str = "red", spec: str = "size 9") -> Product:
    return Product("B1", "shoes", ptype, brand, colour, spec)


def test_rule_labels() -> None:
    q = Query("q1", "nike red running shoes", "running shoes", "nike", "red", None)
    assert rule_label(q, _p("running shoes")) == "E"  # type, brand and colour met
    assert rule_label(q, _p("running shoes", colour="blue")) == "S"  # colour missed
    assert rule_label(q, _p("hiking boots")) == "S"  # same category, other type
    assert rule_label(q, Product("B2", "clothing", "socks", "hanes", "red", "wool")) == "C"
    assert rule_label(q, Product("B3", "kitchen", "kettle", "oxo", "red", "steel")) == "I"


def test_rater_noise_rate() -> None:
    rng = random.Random(0)
    flips = Counter(rater("S", 0.2, rng) for _ in range(5000))
    # 20% wrong: 3/4 of those to a neighbour (E or C), 1/4 to another label (E, C or I)
    assert abs(flips["S"] / 5000 - 0.8) < 0.02
    assert flips["I"] < flips["E"]


def test_world_reads_back_through_esci_reader(tmp_path: Path) -> None:
    folders = write_world(tmp_path, {"train": 5, "test": 3, "pool": 4}, per_query=4, fmt="csv")
    labelled, pool = data.load(folders["labelled"]), data.load(folders["pool"])
    assert labelled.report.join_misses == 0 and not labelled.report.unknown_labels
    assert labelled.report.splits == {"train": 20, "test": 12}
    assert len(pool.pairs) == 16
    assert all(p.meta["rule_label"] in "ESCI" for p in labelled.pairs)
    train_q = {p.query_id for p in labelled.split("train")}
    assert train_q.isdisjoint(p.query_id for p in labelled.split("test"))
