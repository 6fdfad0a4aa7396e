"""ESCI and WANDS fixtures written in the datasets' exact layouts, with the damage real dumps
have: an example whose product is missing, an unknown label, empty fields, one product id
present in two locales with different titles."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ESCI_EXAMPLES = [
    # example_id, query, query_id, product_id, product_locale, esci_label, small, large, split
    (0, "red running shoes", 1, "B001", "us", "E", 1, 1, "train"),
    (1, "red running shoes", 1, "B002", "us", "S", 1, 1, "train"),
    (2, "red running shoes", 1, "B404", "us", "E", 1, 1, "train"),  # product missing
    (3, "phone case", 2, "B003", "us", "C", 0, 1, "test"),
    (4, "phone case", 2, "B001", "us", "X", 1, 1, "test"),  # unknown label
    (5, "zapatillas rojas", 3, "B001", "es", "I", 1, 1, "test"),  # B001 also exists in es
]
ESCI_PRODUCTS = [
    # product_id, title, description, bullet_point, brand, color, locale
    ("B001", "nike red running shoes", "light shoes", "mesh; size 9", "nike", "red", "us"),
    ("B002", "adidas blue running shoes", "", "", "adidas", "blue", "us"),  # empty desc/bullets
    ("B003", "apple phone", "a phone", "", "apple", "", "us"),  # empty bullets, colour
    ("B001", "taladro percutor", "un taladro", "", "bosch", "verde", "es"),
]
ESCI_EXAMPLE_HEADER = ["example_id", "query", "query_id", "product_id", "product_locale",
                       "esci_label", "small_version", "large_version", "split"]
ESCI_PRODUCT_HEADER = ["product_id", "product_title", "product_description",
                       "product_bullet_point", "product_brand", "product_color", "product_locale"]


def _write_csv(path: Path, header: list[str], rows: list[tuple], sep: str = ",") -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=sep)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(params=["csv", "parquet"])
def esci_dir(request, tmp_path: Path) -> Path:
    """The ESCI release's file names; parquet as published, csv as people convert it."""
    if request.param == "csv":
        _write_csv(tmp_path / "shopping_queries_dataset_examples.csv", ESCI_EXAMPLE_HEADER, ESCI_EXAMPLES)
        _write_csv(tmp_path / "shopping_queries_dataset_products.csv", ESCI_PRODUCT_HEADER, ESCI_PRODUCTS)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for name, header, rows in (("examples", ESCI_EXAMPLE_HEADER, ESCI_EXAMPLES),
                                   ("products", ESCI_PRODUCT_HEADER, ESCI_PRODUCTS)):
            table = pa.Table.from_pylist([dict(zip(header, r)) for r in rows])
            pq.write_table(table, tmp_path / f"shopping_queries_dataset_{name}.parquet")
    return tmp_path


@pytest.fixture
def wands_dir(tmp_path: Path) -> Path:
    """WANDS' dataset/ folder: tab-separated although named .csv."""
    _write_csv(tmp_path / "product.csv",
               ["product_id", "product_name", "product_class", "category hierarchy",
                "product_description", "product_features", "rating_count", "average_rating",
                "review_count"],
               [(0, "solid wood platform bed", "Beds", "Furniture / Bedroom / Beds",
                 "a sturdy bed", "color:brown|material:wood", 15, 4.5, 15),
                (1, "modern accent chair", "Accent Chairs", "Furniture / Living Room", "", "", "", "", "")],
               sep="\t")
    _write_csv(tmp_path / "query.csv", ["query_id", "query", "query_class"],
               [(0, "wood bed", "Beds"), (1, "accent chair", "Accent Chairs")], sep="\t")
    _write_csv(tmp_path / "label.csv", ["id", "query_id", "product_id", "label"],
               [(0, 0, 0, "Exact"), (1, 0, 1, "Irrelevant"), (2, 1, 1, "Partial"),
                (3, 1, 7, "Exact"),  # product 7 missing
                (4, 1, 0, "Maybe")],  # unknown label
               sep="\t")
    return tmp_path
