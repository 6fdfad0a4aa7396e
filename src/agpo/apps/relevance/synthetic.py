"""A synthetic e-commerce world for the embedded default, written in the ESCI layout so the real
reader (data.read_esci) is the code path that reads it.

The world: categories of product types with brands, colours and one spec attribute each;
complements between types (a phone → its case and charger). Queries carry an intent (broad,
brand, colour, spec, brand+colour). The noise-free label follows rules:
  same type and every constraint of the query met  → E (exact)
  same type with a constraint missed, or another type of the same category → S (substitute)
  a complement of the queried type                 → C (complement)
  anything else                                    → I (irrelevant)
Human raters then err with probability ``noise``, mostly onto a neighbouring grade (the
confusions real annotators make). Each examples row keeps the noise-free label in an extra
column ``rule_label`` (the ESCI reader keeps unknown columns in ``Pair.meta``), so a demo can
report agreement with the truth as well as with the noisy humans.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CATEGORIES: dict[str, dict[str, list[str]]] = {
    "shoes": {
        "types": ["running shoes", "hiking boots", "sandals"],
        "brands": ["nike", "adidas", "merrell"],
        "specs": ["size 8", "size 9", "size 10"],
    },
    "phones": {
        "types": ["phone", "tablet"],
        "brands": ["apple", "samsung", "pixel"],
        "specs": ["64gb", "128gb", "256gb"],
    },
    "phone gear": {
        "types": ["phone case", "charger", "screen protector"],
        "brands": ["anker", "otterbox", "belkin"],
        "specs": ["usb c", "slim", "rugged"],
    },
    "kitchen": {
        "types": ["coffee maker", "kettle", "blender"],
        "brands": ["breville", "ninja", "oxo"],
        "specs": ["1 litre", "2 litre", "steel"],
    },
    "pantry": {
        "types": ["coffee beans", "coffee filters", "tea"],
        "brands": ["lavazza", "melitta", "twinings"],
        "specs": ["250g", "500g", "organic"],
    },
    "clothing": {
        "types": ["socks", "t shirt", "rain jacket"],
        "brands": ["hanes", "uniqlo", "patagonia"],
        "specs": ["cotton", "wool", "large"],
    },
    "fitness": {
        "types": ["yoga mat", "dumbbells", "water bottle"],
        "brands": ["gaiam", "bowflex", "nalgene"],
        "specs": ["6mm", "10kg", "1 litre"],
    },
}
COMPLEMENTS: dict[str, list[str]] = {
    "running shoes": ["socks", "water bottle"],
    "hiking boots": ["socks", "rain jacket"],
    "sandals": ["socks"],
    "phone": ["phone case", "charger", "screen protector"],
    "tablet": ["charger", "screen protector"],
    "coffee maker": ["coffee beans", "coffee filters"],
    "kettle": ["tea"],
    "blender": ["water bottle"],
    "yoga mat": ["water bottle", "t shirt"],
    "dumbbells": ["yoga mat"],
}
COLOURS = ["black", "white", "red", "blue", "green", "grey"]
INTENTS = ("broad", "brand", "colour", "spec", "brand colour")
LABELS = ("E", "S", "C", "I")


@dataclass(frozen=True)
class Product:
    product_id: str
    category: str
    type: str
    brand: str
    colour: str
    spec: str

    def row(self, locale: str) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "product_title": f"{self.brand} {self.colour} {self.type}, {self.spec}",
            "product_description": f"a {self.colour} {self.type} by {self.brand}.",
            "product_bullet_point": f"{self.category}; {self.spec}",
            "product_brand": self.brand,
            "product_color": self.colour,
            "product_locale": locale,
        }


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str
    type: str
    brand: str | None
    colour: str | None
    spec: str | None


def _category_of(ptype: str) -> str:
    return next(c for c, v in CATEGORIES.items() if ptype in v["types"])


def rule_label(q: Query, p: Product) -> str:
    """The noise-free ESCI label of a (query, product) pair (module docstring's rules)."""
    if p.type == q.type:
        met = all(want is None or want == have for want, have in
                  ((q.brand, p.brand), (q.colour, p.colour), (q.spec, p.spec)))
        return "E" if met else "S"
    if _category_of(p.type) == _category_of(q.type):
        return "S"
    if p.type in COMPLEMENTS.get(q.type, []):
        return "C"
    return "I"


def rater(label: str, noise: float, rng: random.Random) -> str:
    """A human rater's label: right with probability 1 − noise, else (3 times in 4) a neighbouring
    grade and otherwise any other label."""
    if rng.random() >= noise:
        return label
    i = LABELS.index(label)
    neighbours = [LABELS[j] for j in (i - 1, i + 1) if 0 <= j < len(LABELS)]
    if rng.random() < 0.75:
        return rng.choice(neighbours)
    return rng.choice([x for x in LABELS if x != label])


def catalogue(rng: random.Random, per_type: int = 12) -> list[Product]:
    products = []
    for cat, spec in CATEGORIES.items():
        for ptype in spec["types"]:
            for _ in range(per_type):
                products.append(Product(
                    product_id=f"B{len(products):07d}",
                    category=cat,
                    type=ptype,
                    brand=rng.choice(spec["brands"]),
                    colour=rng.choice(COLOURS),
                    spec=rng.choice(spec["specs"]),
                ))
    return products


def make_query(rng: random.Random, qid: int) -> Query:
    cat = rng.choice(list(CATEGORIES))
    ptype = rng.choice(CATEGORIES[cat]["types"])
    intent = rng.choice(INTENTS)
    brand = rng.choice(CATEGORIES[cat]["brands"]) if "brand" in intent else None
    colour = rng.choice(COLOURS) if "colour" in intent else None
    spec = rng.choice(CATEGORIES[cat]["specs"]) if intent == "spec" else None
    words = [w for w in (brand, colour, ptype, spec) if w]
    return Query(f"q{qid:05d}", " ".join(words), ptype, brand, colour, spec)


def candidates(q: Query, products: list[Product], k: int, rng: random.Random) -> list[Product]:
    """What a retrieval system would show: the queried type (exact or not), its category
    neighbours, its complements, and a few unrelated items (~40/20/20/20)."""
    by_kind: dict[str, list[Product]] = {"type": [], "cat": [], "comp": [], "other": []}
    for p in products:
        if p.type == q.type:
            by_kind["type"].append(p)
        elif _category_of(p.type) == _category_of(q.type):
            by_kind["cat"].append(p)
        elif p.type in COMPLEMENTS.get(q.type, []):
            by_kind["comp"].append(p)
        else:
            by_kind["other"].append(p)
    weights = {"type": 0.4, "cat": 0.2, "comp": 0.2, "other": 0.2}
    chosen: dict[str, Product] = {}
    while len(chosen) < k:
        kinds = [kd for kd in weights if by_kind[kd]]
        kind = rng.choices(kinds, [weights[kd] for kd in kinds])[0]
        p = rng.choice(by_kind[kind])
        chosen[p.product_id] = p
    return list(chosen.values())


def write_world(
    out: str | Path,
    queries: dict[str, int] | None = None,
    per_query: int = 8,
    noise: float = 0.2,
    seed: int = 0,
    fmt: str = "parquet",
    locale: str = "us",
) -> dict[str, Path]:
    """Write one ESCI-layout folder per set (default: ``labelled`` with train and test splits of
    human-rated pairs, and ``pool``, the traffic to annotate). Returns set name → folder.

    ``queries`` maps a set to its number of distinct queries: split ``test`` of ``labelled``
    gets its own queries, as ESCI's test split does. Pool rows carry rater labels too, so
    teacher labels can be scored; the demo never trains on them.
    """
    rng = random.Random(seed)
    queries = queries or {"train": 60, "test": 60, "pool": 300}
    products = catalogue(rng)
    prod_rows = [p.row(locale) for p in products]
    sets: dict[str, list[dict[str, Any]]] = {"labelled": [], "pool": []}
    qid = 0
    for split, n in queries.items():
        for _ in range(n):
            q = make_query(rng, qid)
            qid += 1
            for p in candidates(q, products, per_query, rng):
                truth = rule_label(q, p)
                rows = sets["pool" if split == "pool" else "labelled"]
                rows.append({
                    "example_id": len(rows),
                    "query": q.text,
                    "query_id": q.query_id,
                    "product_id": p.product_id,
                    "product_locale": locale,
                    "esci_label": rater(truth, noise, rng),
                    "small_version": 1,
                    "large_version": 1,
                    "split": "train" if split == "pool" else split,
                    "rule_label": truth,
                })
    out = Path(out)
    folders = {}
    for name, rows in sets.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / f"shopping_queries_dataset_examples.{fmt}", rows)
        _write(folder / f"shopping_queries_dataset_products.{fmt}", prod_rows)
        folders[name] = folder
    return folders


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
        return
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
