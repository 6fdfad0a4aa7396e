"""Query–item relevance pairs read from the layouts people actually have, with every dropped or
damaged row counted by kind (a join miss, an unknown label, an empty field), never silently.

Layouts (detected from a folder's file names; a single file is read by its extension):
- ESCI (Amazon Shopping Queries): ``*examples*.{parquet,csv}`` with example_id, query,
  query_id, product_id, product_locale, esci_label, small_version, large_version, split, joined
  with ``*products*.{parquet,csv}`` (product_id, product_title, product_description,
  product_bullet_point, product_brand, product_color, product_locale) on
  (product_locale, product_id). Extra columns are kept in ``Pair.meta``.
- WANDS (Wayfair): tab-separated ``product.csv`` / ``query.csv`` / ``label.csv`` with labels
  Exact / Partial / Irrelevant.
- jsonl: one object per line with ``query``, ``title`` and optionally ``label``, ``query_id``,
  ``product_id``, ``description``, ``bullets``, ``brand``, ``color``, ``split``, ``locale``.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agpo.apps.relevance.labels import LabelScheme, get_scheme
from agpo.errors import UserError, at
from agpo.io import parquet_file, read_parquet
# aliased: this module's own read_jsonl (path → Dataset) is public API
from agpo.io import read_jsonl as jsonl_rows

ITEM_FIELDS = ("title", "description", "bullets", "brand", "color")
ESCI_EXAMPLE_COLUMNS = ("query", "query_id", "product_id", "product_locale", "esci_label")
ESCI_PRODUCT_COLUMNS = ("product_id", "product_locale")
_ESCI_KNOWN = {*ESCI_EXAMPLE_COLUMNS, "split"}  # columns that become Pair fields, not meta
_ESCI_ITEM = {
    "product_title": "title",
    "product_description": "description",
    "product_bullet_point": "bullets",
    "product_brand": "brand",
    "product_color": "color",
}


@dataclass(frozen=True)
class Pair:
    """One query–item pair. ``label`` is canonical in the scheme it was read with (None: none)."""

    query_id: str
    product_id: str
    query: str
    item: Mapping[str, str]
    label: str | None
    split: str = ""
    locale: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row = {"query_id": self.query_id, "product_id": self.product_id, "query": self.query}
        row.update(self.item)
        row.update(label=self.label, split=self.split, locale=self.locale)
        row.update({k: v for k, v in self.meta.items() if k not in row})
        return row


@dataclass
class DataReport:
    """What reading a dataset found, by kind; ``labels``/``splits``/``locales`` count raw values
    over examples whose product was found."""

    format: str = ""
    examples: int = 0
    products: int = 0
    join_misses: int = 0
    unknown_labels: dict[str, int] = field(default_factory=dict)
    missing_labels: int = 0
    empty_fields: dict[str, int] = field(default_factory=dict)
    filtered: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    locales: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Dataset:
    pairs: list[Pair]
    report: DataReport
    scheme: LabelScheme

    def split(self, name: str) -> list[Pair]:
        return [p for p in self.pairs if p.split == name]


# ---------------------------------------------------------------------------------- readers
def _read_table(path: Path, sep: str = ",") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for a parquet or delimited file; line numbers are 1-based with the
    header on line 1 (parquet: row index + 2, so messages read the same)."""
    if path.suffix == ".parquet":
        yield from read_parquet(path, first=2)
        return
    csv.field_size_limit(sys.maxsize)  # ESCI descriptions exceed the 128 KiB default
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=sep)
        try:
            for row in reader:
                yield reader.line_num, row
        except UnicodeDecodeError:
            raise at(path, reader.line_num + 1, "not UTF-8 text") from None


def _columns(path: Path, sep: str = ",") -> list[str]:
    if path.suffix == ".parquet":
        return list(parquet_file(path).schema_arrow.names)
    with path.open(newline="", encoding="utf-8") as f:
        try:
            return next(csv.reader(f, delimiter=sep), [])
        except UnicodeDecodeError:
            raise at(path, 1, "not UTF-8 text") from None


def _require(path: Path, columns: tuple[str, ...], sep: str = ",") -> None:
    have = _columns(path, sep)
    missing = [c for c in columns if c not in have]
    if missing:
        raise at(path, 1, f"columns {missing}: missing (found {have})")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas-written csv/parquet
        return ""
    return str(value).strip()


def _cells(row: Mapping[str, Any], path: Path, line: int) -> Callable[..., str]:
    """``get(field, default=None)``: the field of ``row`` as text. A value that is not text or
    a number (a list or struct column of a parquet file, an object in a jsonl line) is a
    UserError naming file, line and field: its Python repr would reach the teacher's prompt."""

    def get(name: str, default: Any = None) -> str:
        value = row.get(name, default)
        if isinstance(value, dict | list | tuple | bytes | bytearray):
            kind = ("an object" if isinstance(value, dict) else
                    "binary data" if isinstance(value, bytes | bytearray) else "a list")
            raise at(path, line, f"field {name!r}: expected text or a number, got {kind}")
        return _text(value)

    return get


def _find(folder: Path, stem: str) -> Path | None:
    for ext in (".parquet", ".csv"):
        hits = sorted(folder.glob(f"*{stem}*{ext}"))
        if hits:
            return hits[0]
    return None


class _Counts:
    """Accumulates a DataReport while pairs stream past."""

    def __init__(self, fmt: str, scheme: LabelScheme) -> None:
        self.r = DataReport(format=fmt)
        self.scheme = scheme
        self.labels: Counter[str] = Counter()
        self.splits: Counter[str] = Counter()
        self.locales: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        self.empty: Counter[str] = Counter()

    def label(self, raw: Any) -> str | None:
        text = _text(raw)
        self.labels[text] += 1
        if not text:
            self.r.missing_labels += 1
            return None
        lab = self.scheme.normalize(text)
        if lab is None:
            self.unknown[text] += 1
        return lab

    def found(self, pair: Pair) -> None:
        self.splits[pair.split] += 1
        self.locales[pair.locale] += 1
        if not pair.query:
            self.empty["query"] += 1
        for name in ITEM_FIELDS:
            if not pair.item.get(name):
                self.empty[name] += 1

    def report(self) -> DataReport:
        self.r.labels = dict(self.labels.most_common())
        self.r.splits = dict(self.splits.most_common())
        self.r.locales = dict(self.locales.most_common())
        self.r.unknown_labels = dict(self.unknown.most_common())
        self.r.empty_fields = dict(self.empty.most_common())
        return self.r


def read_esci(
    examples: Path, products: Path, scheme: LabelScheme, version: str = "all"
) -> Dataset:
    """ESCI examples joined with products on (product_locale, product_id).

    ``version`` = small | large | all keeps rows whose ``small_version`` / ``large_version`` is 1
    (the rest are counted as ``filtered``).
    """
    _require(examples, ESCI_EXAMPLE_COLUMNS)
    _require(products, ESCI_PRODUCT_COLUMNS)
    catalogue: dict[tuple[str, str], dict[str, str]] = {}
    for line, row in _read_table(products):
        get = _cells(row, products, line)
        catalogue[(get("product_locale"), get("product_id"))] = {
            ours: get(theirs) for theirs, ours in _ESCI_ITEM.items()}
    counts = _Counts("esci", scheme)
    counts.r.products = len(catalogue)
    pairs = []
    for line, row in _read_table(examples):
        get = _cells(row, examples, line)
        counts.r.examples += 1
        if version != "all" and get(f"{version}_version") not in {"1", "1.0", "True"}:
            counts.r.filtered += 1
            continue
        locale, pid = get("product_locale"), get("product_id")
        item = catalogue.get((locale, pid))
        if item is None:
            counts.r.join_misses += 1
            continue
        meta = {k: v for k, v in row.items() if k not in _ESCI_KNOWN}
        pair = Pair(
            query_id=get("query_id"),
            product_id=pid,
            query=get("query"),
            item=item,
            label=counts.label(get("esci_label")),
            split=get("split"),
            locale=locale,
            meta=meta,
        )
        counts.found(pair)
        pairs.append(pair)
    return Dataset(pairs, counts.report(), scheme)



def read_wands(folder: Path, scheme: LabelScheme) -> Dataset:
    """WANDS: label.csv (id, query_id, product_id, label) joined with query.csv and product.csv
    (all tab-separated). WANDS has no split: every pair gets split ``""`` unless the label file
    carries a ``split`` column."""
    files = {name: folder / f"{name}.csv" for name in ("product", "query", "label")}
    _require(files["product"], ("product_id", "product_name"), "\t")
    _require(files["query"], ("query_id", "query"), "\t")
    _require(files["label"], ("query_id", "product_id", "label"), "\t")
    catalogue = {}
    for line, row in _read_table(files["product"], "\t"):
        get = _cells(row, files["product"], line)
        catalogue[get("product_id")] = {
            "title": get("product_name"),
            "description": get("product_description"),
            "bullets": get("product_features"),
            "brand": "",
            "color": "",
            "category": get("product_class"),
        }
    queries = {}
    for line, row in _read_table(files["query"], "\t"):
        get = _cells(row, files["query"], line)
        queries[get("query_id")] = get("query")
    counts = _Counts("wands", scheme)
    counts.r.products = len(catalogue)
    pairs = []
    for line, row in _read_table(files["label"], "\t"):
        get = _cells(row, files["label"], line)
        counts.r.examples += 1
        qid, pid = get("query_id"), get("product_id")
        if qid not in queries:
            raise at(files["label"], line, f"query_id {qid!r}: not in {files['query']}")
        item = catalogue.get(pid)
        if item is None:
            counts.r.join_misses += 1
            continue
        pair = Pair(qid, pid, queries[qid], item, counts.label(get("label")),
                    split=get("split"))
        counts.found(pair)
        pairs.append(pair)
    return Dataset(pairs, counts.report(), scheme)


def read_jsonl(path: Path, scheme: LabelScheme) -> Dataset:
    """One pair per line: ``query`` and ``title`` required, everything else optional."""
    counts = _Counts("jsonl", scheme)
    pairs = []
    for line_no, row in jsonl_rows(path):
        if "query" not in row or "title" not in row:
            raise at(path, line_no, "fields 'query' and 'title': required")
        counts.r.examples += 1
        get = _cells(row, path, line_no)
        item = {name: get(name) for name in ITEM_FIELDS}
        known = {"query", "query_id", "product_id", "label", "split", "locale", *ITEM_FIELDS}
        query = get("query")
        pair = Pair(
            query_id=get("query_id", query),
            product_id=get("product_id", line_no),
            query=query,
            item=item,
            label=counts.label(get("label")),
            split=get("split"),
            locale=get("locale"),
            meta={k: v for k, v in row.items() if k not in known},
        )
        counts.found(pair)
        pairs.append(pair)
    counts.r.products = len({p.product_id for p in pairs})
    return Dataset(pairs, counts.report(), scheme)


def load(path: str | Path, scheme: str | LabelScheme = "esci", version: str = "all") -> Dataset:
    """Read a dataset folder (ESCI or WANDS layout) or a ``.jsonl`` file."""
    path = Path(path)
    sch = get_scheme(scheme) if isinstance(scheme, str) else scheme
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix == ".jsonl":
            return read_jsonl(path, sch)
        raise UserError(f"{path}: a single file must be .jsonl (for ESCI or WANDS pass the folder)")
    examples, products = _find(path, "examples"), _find(path, "products")
    if examples and products:
        return read_esci(examples, products, sch, version)
    if all((path / f"{n}.csv").exists() for n in ("product", "query", "label")):
        return read_wands(path, sch)
    jsonl = sorted(path.glob("*.jsonl"))
    if len(jsonl) == 1:
        return read_jsonl(jsonl[0], sch)
    raise UserError(
        f"{path}: no dataset layout found (ESCI: *examples*.parquet|csv + *products*.parquet|csv;"
        " WANDS: product.csv, query.csv, label.csv; or one .jsonl file)"
    )

