"""The synthetic world: rule labels by hand, the corpus holds the knowledge and no label, and
the ESCI reader reads what it wrote."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from agpo.apps.relevance import data
from agpo.apps.relevance.synthetic import (CATEGORY_OF, TAXONOMY, Product, Query, catalogue, corpus,
                                           rater, rule_label, type_weights, write_world)


def _p(ptype: str, brand: str = "nike", colour: str = "red", spec: str = "size 9") -> Product:
    return Product("B1", CATEGORY_OF[ptype], ptype, brand, colour, spec)


def test_rule_labels() -> None:
    q = Query("q1", "nike red sneakers", "sneakers", "nike", "red", None)
    assert rule_label(q, _p("sneakers")) == "E"  # type, brand and colour met
    assert rule_label(q, _p("sneakers", colour="blue")) == "S"  # colour missed
    assert rule_label(q, _p("clogs")) == "S"  # footwear too: nothing in the title says so
    assert rule_label(q, _p("insoles", "scholl")) == "C"  # footcare complements footwear
    assert rule_label(q, _p("kettle", "smeg")) == "I"


def test_type_names_are_unique_words() -> None:
    types = [t for ts, _, _ in TAXONOMY.values() for t in ts]
    assert len(types) == len(set(types)) == 108 and all(" " not in t for t in types)
    # no type word appears in a category name: a title never gives its category away
    assert not {w for c in TAXONOMY for w in c.split()} & set(types)


def test_long_tail() -> None:
    w = type_weights(random.Random(0), zipf=1.3)
    share = sorted(w.values(), reverse=True)
    total = sum(share)
    # 1/1^1.3 over Σ_{r=1}^{108} r^-1.3 = 1/3.115 → the most asked type gets 32%
    assert abs(share[0] / total - 0.321) < 0.001
    assert sum(share[54:]) / total < 0.07


def test_corpus_states_knowledge_never_labels() -> None:
    rng = random.Random(0)
    lines = corpus(catalogue(rng), rng)
    text = "\n".join(lines)
    assert "clogs is a kind of footwear ." in lines
    assert "footwear > clogs : " in text and "customers also bought" in text
    assert not any(w in text.split() for w in ("E", "S", "C", "I", "exact", "substitute"))


def test_rater_noise_rate() -> None:
    rng = random.Random(0)
    flips = Counter(rater("S", 0.2, rng) for _ in range(5000))
    # 20% wrong: 3/4 of those to a neighbour (E or C), 1/4 to another label (E, C or I)
    assert abs(flips["S"] / 5000 - 0.8) < 0.02
    assert flips["I"] < flips["E"]


def test_world_reads_back_through_esci_reader(tmp_path: Path) -> None:
    files = write_world(tmp_path, {"train": 5, "test": 3, "pool": 4}, per_query=4, fmt="csv")
    labelled, pool = data.load(files["labelled"]), data.load(files["pool"])
    assert labelled.report.join_misses == 0 and not labelled.report.unknown_labels
    assert labelled.report.splits == {"train": 20, "test": 12}
    assert len(pool.pairs) == 16
    assert all(p.meta["rule_label"] in "ESCI" and p.meta["query_type"] in CATEGORY_OF
               for p in labelled.pairs)
    train_q = {p.query_id for p in labelled.split("train")}
    assert train_q.isdisjoint(p.query_id for p in labelled.split("test"))
    assert files["corpus"].read_text().count("\n") > 1000
