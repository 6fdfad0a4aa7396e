"""A synthetic e-commerce world for the embedded default, written in the ESCI layout so the real
reader (data.read_esci) is the code path that reads it. docs/relevance.md gives the design and
why it is a faithful model of the paper's setting; in short:

- A taxonomy of 18 categories × 6 product types. Type names are distinct words ("sneakers",
  "clogs"), so nothing in a title says which category a type is in — as in real titles.
- Knowledge: which category a type belongs to, and which categories complement which
  (footwear ↔ footcare, phones ↔ mobile accessories, ...). The world states it in an unlabelled
  catalogue corpus (``corpus.txt``: taxonomy pages, "goes with" lines, product descriptions) that
  the teacher is pretrained on, the way an LLM is pretrained on the web. The student only ever
  sees labelled pairs.
- Queries follow a long tail: the type a query asks for is drawn with Zipf weights, so most
  types are rarely or never queried in the small labelled set — the rare cases where a label
  needs knowledge the labelled set does not hold.
- The noise-free label follows rules:
    same type and every constraint of the query met     → E (exact)
    same type with a constraint missed, or another type of the same category → S (substitute)
    a type of a complementary category                  → C (complement)
    anything else                                       → I (irrelevant)
  Human raters err with probability ``noise``, mostly onto a neighbouring grade. Each examples
  row keeps the noise-free label and the queried type in extra columns ``rule_label`` and
  ``query_type`` (the ESCI reader keeps unknown columns in ``Pair.meta``), so a demo can score
  against the truth as well as the noisy humans, and on the rarely queried types apart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# category → (types, brands, specs). Types are single words unique across the world.
TAXONOMY: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "footwear": (("sneakers", "boots", "sandals", "loafers", "slippers", "clogs"),
                 ("nike", "adidas", "merrell", "crocs"), ("size 8", "size 9", "size 10", "wide")),
    "footcare": (("socks", "insoles", "shoelaces", "polish", "shoehorn", "gaiters"),
                 ("smartwool", "scholl", "kiwi", "darn"), ("merino", "cushioned", "pack of 3", "ankle")),
    "phones": (("smartphone", "tablet", "smartwatch", "ereader", "phablet", "handset"),
               ("apple", "samsung", "pixel", "motorola"), ("64gb", "128gb", "256gb", "unlocked")),
    "mobile accessories": (("case", "charger", "stylus", "earbuds", "powerbank", "cable"),
                           ("anker", "otterbox", "belkin", "spigen"), ("usbc", "slim", "rugged", "wireless")),
    "appliances": (("percolator", "kettle", "blender", "toaster", "juicer", "grinder"),
                   ("breville", "ninja", "cuisinart", "smeg"), ("1 litre", "2 litre", "steel", "1200w")),
    "pantry": (("coffee", "tea", "filters", "bread", "cocoa", "syrup"),
               ("lavazza", "melitta", "twinings", "hershey"), ("250g", "500g", "organic", "decaf")),
    "tops": (("tshirt", "hoodie", "sweater", "blouse", "cardigan", "polo"),
             ("hanes", "uniqlo", "levis", "gap"), ("cotton", "wool", "large", "medium")),
    "outerwear": (("parka", "raincoat", "anorak", "poncho", "windbreaker", "fleece"),
                  ("patagonia", "columbia", "northface", "arcteryx"), ("waterproof", "insulated", "packable", "xl")),
    "fitness": (("dumbbells", "kettlebell", "barbell", "treadmill", "jumprope", "roller"),
                ("gaiam", "bowflex", "rogue", "peloton"), ("5kg", "10kg", "20kg", "adjustable")),
    "drinkware": (("bottle", "tumbler", "flask", "mug", "thermos", "shaker"),
                  ("nalgene", "yeti", "contigo", "stanley"), ("500ml", "750ml", "vacuum", "bpafree")),
    "camping": (("tent", "hammock", "lantern", "backpack", "compass", "stove"),
                ("coleman", "rei", "msr", "osprey"), ("2person", "ultralight", "40l", "solar")),
    "cookware": (("skillet", "wok", "saucepan", "griddle", "stockpot", "casserole"),
                 ("lodge", "tefal", "allclad", "lecreuset"), ("nonstick", "castiron", "10inch", "5qt")),
    "utensils": (("spatula", "ladle", "tongs", "whisk", "peeler", "grater"),
                 ("oxo", "joseph", "kitchenaid", "zyliss"), ("silicone", "bamboo", "set of 3", "dishwasher safe")),
    "computers": (("laptop", "desktop", "chromebook", "notebook", "workstation", "netbook"),
                  ("dell", "lenovo", "hp", "asus"), ("16gb", "32gb", "1tb", "512gb")),
    "computer accessories": (("mouse", "keyboard", "webcam", "mousepad", "dock", "headset"),
                             ("logitech", "razer", "corsair", "jabra"), ("bluetooth", "rgb", "ergonomic", "usb")),
    "pets": (("kibble", "leash", "collar", "litterbox", "catnip", "kennel"),
             ("purina", "kong", "petsafe", "ruffwear"), ("small", "grainfree", "reflective", "2kg")),
    "baby": (("stroller", "crib", "pacifier", "diapers", "bib", "highchair"),
             ("graco", "pampers", "chicco", "munchkin"), ("newborn", "foldable", "size 1", "convertible")),
    "garden": (("shovel", "rake", "hose", "trowel", "wheelbarrow", "pruners"),
               ("fiskars", "gardena", "ames", "scotts"), ("50ft", "heavy duty", "telescopic", "carbon")),
}
COMPLEMENTARY: tuple[tuple[str, str], ...] = (
    ("footwear", "footcare"), ("phones", "mobile accessories"), ("appliances", "pantry"),
    ("computers", "computer accessories"), ("cookware", "utensils"), ("fitness", "drinkware"),
    ("camping", "drinkware"), ("camping", "outerwear"), ("pets", "garden"),
)
"""Category pairs whose items complement each other (both directions)."""
COLOURS = ("black", "white", "red", "blue", "green", "grey")
INTENTS = ("broad", "brand", "colour", "spec", "brand colour")
LABELS = ("E", "S", "C", "I")
CATEGORY_OF: dict[str, str] = {t: c for c, (types, _, _) in TAXONOMY.items() for t in types}


def complementary(a: str, b: str) -> bool:
    """Whether categories ``a`` and ``b`` complement each other."""
    return (a, b) in COMPLEMENTARY or (b, a) in COMPLEMENTARY


@dataclass(frozen=True)
class Product:
    product_id: str
    category: str
    type: str
    brand: str
    colour: str
    spec: str

    @property
    def title(self) -> str:
        return f"{self.brand} {self.colour} {self.type}, {self.spec}"

    def row(self, locale: str) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "product_title": self.title,
            "product_description": f"a {self.colour} {self.type} by {self.brand}.",
            "product_bullet_point": f"{self.spec}; {self.colour}",
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


def rule_label(q: Query, p: Product) -> str:
    """The noise-free ESCI label of a (query, product) pair (module docstring's rules)."""
    if p.type == q.type:
        met = all(want is None or want == have for want, have in
                  ((q.brand, p.brand), (q.colour, p.colour), (q.spec, p.spec)))
        return "E" if met else "S"
    qc, pc = CATEGORY_OF[q.type], CATEGORY_OF[p.type]
    if qc == pc:
        return "S"
    return "C" if complementary(qc, pc) else "I"


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


def catalogue(rng: random.Random, per_type: int = 8) -> list[Product]:
    products = []
    for cat, (types, brands, specs) in TAXONOMY.items():
        for ptype in types:
            for _ in range(per_type):
                products.append(Product(f"B{len(products):07d}", cat, ptype, rng.choice(brands),
                                        rng.choice(COLOURS), rng.choice(specs)))
    return products


def type_weights(rng: random.Random, zipf: float) -> dict[str, float]:
    """Query frequency of each product type: Zipf weights 1/rank^zipf over a shuffled order
    (0: uniform). With 108 types and zipf 1.3 the most asked type gets 32% of the queries and
    the 54 least asked 6% together."""
    order = list(CATEGORY_OF)
    rng.shuffle(order)
    return {t: 1.0 / (rank + 1) ** zipf for rank, t in enumerate(order)}


def make_query(rng: random.Random, qid: int, weights: dict[str, float]) -> Query:
    ptype = rng.choices(list(weights), list(weights.values()))[0]
    _, brands, specs = TAXONOMY[CATEGORY_OF[ptype]]
    intent = rng.choice(INTENTS)
    brand = rng.choice(brands) if "brand" in intent else None
    colour = rng.choice(COLOURS) if "colour" in intent else None
    spec = rng.choice(specs) if intent == "spec" else None
    words = [w for w in (brand, colour, ptype, spec) if w]
    return Query(f"q{qid:05d}", " ".join(words), ptype, brand, colour, spec)


def candidates(q: Query, products: list[Product], k: int, rng: random.Random) -> list[Product]:
    """What a retrieval system would show: the queried type (exact or not), its category
    neighbours, complements, and unrelated items (~40/20/20/20; a kind with no items is
    skipped)."""
    qc = CATEGORY_OF[q.type]
    by_kind: dict[str, list[Product]] = {"type": [], "cat": [], "comp": [], "other": []}
    for p in products:
        if p.type == q.type:
            by_kind["type"].append(p)
        elif p.category == qc:
            by_kind["cat"].append(p)
        elif complementary(qc, p.category):
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


def corpus(products: list[Product], rng: random.Random, repeats: int = 4) -> list[str]:
    """The unlabelled catalogue corpus the teacher is pretrained on: one document per line.

    It states the world's knowledge the way web pages do — taxonomy pages ("footwear : clogs ,
    sneakers , ..."), "is a kind of" sentences, product pages with their breadcrumb ("footwear >
    sneakers : nike red sneakers, size 9") and "customers also bought" lists (a complementary
    category's items) — and never a relevance label. ``repeats`` shuffled rounds of each kind
    (a fact seen once is not learnt by a tiny model).
    """
    by_category: dict[str, list[Product]] = {}
    for p in products:
        by_category.setdefault(p.category, []).append(p)
    lines: list[str] = []
    for _ in range(repeats):
        for cat, (types, _, _) in TAXONOMY.items():
            shuffled = list(types)
            rng.shuffle(shuffled)
            lines.append(f"{cat} : " + " , ".join(shuffled))
            lines += [f"{t} is a kind of {cat} ." for t in types]
        for p in products:
            lines.append(f"{p.category} > {p.type} : {p.title}")
            partners = [c for c in TAXONOMY if complementary(p.category, c)]
            if partners:
                mate = rng.choice(by_category[rng.choice(partners)])
                lines.append(f"{p.title} . customers also bought : {mate.title}")
    rng.shuffle(lines)
    return lines


def write_world(
    out: str | Path,
    queries: dict[str, int] | None = None,
    per_query: int = 8,
    noise: float = 0.2,
    seed: int = 0,
    fmt: str = "parquet",
    locale: str = "us",
    zipf: float = 1.3,
) -> dict[str, Path]:
    """Write one ESCI-layout folder per set (``labelled`` with train and test splits of
    human-rated pairs, and ``pool``, the traffic to annotate) and the catalogue corpus
    ``corpus.txt``. Returns name → path (keys labelled, pool, corpus).

    ``queries`` maps a split to its number of distinct queries (train, test, pool): the test
    split gets its own queries, as ESCI's test split does. Pool rows carry rater labels too, so
    teacher labels can be scored and the oracle student trained; the demo never trains a teacher
    on them.
    """
    rng = random.Random(seed)
    queries = queries or {"train": 400, "test": 100, "pool": 1600}
    products = catalogue(rng)
    weights = type_weights(rng, zipf)
    prod_rows = [p.row(locale) for p in products]
    sets: dict[str, list[dict[str, Any]]] = {"labelled": [], "pool": []}
    qid = 0
    for split, n in queries.items():
        for _ in range(n):
            q = make_query(rng, qid, weights)
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
                    "query_type": q.type,
                })
    out = Path(out)
    folders: dict[str, Path] = {}
    for name, rows in sets.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / f"shopping_queries_dataset_examples.{fmt}", rows)
        _write(folder / f"shopping_queries_dataset_products.{fmt}", prod_rows)
        folders[name] = folder
    folders["corpus"] = out / "corpus.txt"
    folders["corpus"].write_text("\n".join(corpus(products, rng)) + "\n", encoding="utf-8")
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
