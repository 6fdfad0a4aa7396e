"""Reading ESCI, WANDS and jsonl natively, with every damaged row counted by kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agpo.apps.relevance import data
from agpo.cli import main as agpo_main
from agpo.errors import UserError


def test_esci_join_on_locale_and_id_counts_damage(esci_dir: Path) -> None:
    ds = data.load(esci_dir)
    r = ds.report
    assert r.format == "esci"
    assert (r.examples, r.products, r.join_misses) == (6, 4, 1)  # B404 has no product row
    assert r.unknown_labels == {"X": 1}
    # raw label counts over the 5 joined examples: E, S, C, X, I
    assert r.labels == {"E": 1, "S": 1, "C": 1, "X": 1, "I": 1}
    assert r.splits == {"train": 2, "test": 3}
    assert r.locales == {"us": 4, "es": 1}
    # empty fields among the 5 joined examples: B002 (description, bullets), B003 (bullets,
    # colour), es-B001 (bullets); us-B001 twice, all full → bullets 3, description 1, color 1
    assert r.empty_fields == {"description": 1, "bullets": 3, "color": 1}
    by_id = {int(p.meta["example_id"]): p for p in ds.pairs}  # csv: "5", parquet: 5
    assert by_id[5].item["title"] == "taladro percutor"  # es B001, not the us shoes
    assert by_id[4].label is None and by_id[0].label == "E"
    assert by_id[0].item["brand"] == "nike" and by_id[0].query_id == "1"


def test_esci_small_version_filter(esci_dir: Path) -> None:
    ds = data.load(esci_dir, version="small")
    assert ds.report.filtered == 1  # example 3 has small_version 0
    assert len(ds.pairs) == 4


def test_esci_as_three_level_scheme(esci_dir: Path) -> None:
    ds = data.load(esci_dir, scheme="3level")
    assert sorted(p.label for p in ds.pairs if p.label) == ["exact", "irrelevant", "partial", "partial"]


def test_esci_missing_column_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "x_examples.csv").write_text("query,query_id\nq,1\n")
    (tmp_path / "x_products.csv").write_text("product_id,product_locale\nB1,us\n")
    with pytest.raises(UserError, match=r"x_examples.csv:1: columns \['product_id'"):
        data.load(tmp_path)


def test_wands(wands_dir: Path) -> None:
    ds = data.load(wands_dir, scheme="3level")
    r = ds.report
    assert (r.format, r.examples, r.products, r.join_misses) == ("wands", 5, 2, 1)
    assert r.unknown_labels == {"Maybe": 1}
    assert [p.label for p in ds.pairs] == ["exact", "irrelevant", "partial", None]
    assert ds.pairs[0].query == "wood bed" and ds.pairs[0].item["title"] == "solid wood platform bed"
    assert ds.pairs[0].item["bullets"] == "color:brown|material:wood"
    # graded: Exact 5, Partial 3, Irrelevant 1 (a convention, documented in labels.py)
    assert [p.label for p in data.load(wands_dir, scheme="graded").pairs] == ["5", "1", "3", None]


def test_jsonl_and_bad_line(tmp_path: Path) -> None:
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"query": "tea", "title": "green tea", "label": "Exact"}) + "\n"
                 + json.dumps({"query": "tea", "title": "kettle", "label": "complement"}) + "\n")
    ds = data.load(f)
    assert [p.label for p in ds.pairs] == ["E", "C"]
    assert ds.report.empty_fields["brand"] == 2
    f.write_text('{"query": "tea"}\n')
    with pytest.raises(UserError, match=r"pairs.jsonl:1: fields 'query' and 'title'"):
        data.load(f)


def test_stats_cli_json(esci_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert agpo_main(["relevance", "stats", "--data", str(esci_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"examples", "products", "join_misses", "labels", "splits", "locales"} <= set(out)
    assert out["join_misses"] == 1 and out["locales"] == {"us": 4, "es": 1}


def test_stats_cli_unknown_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert agpo_main(["relevance", "stats", "--data", str(tmp_path)]) == 2
    assert "no dataset layout found" in capsys.readouterr().err


@pytest.mark.parametrize(("field", "value", "got"), [
    ("title", {"en": "green tea"}, "an object"),  # would reach the teacher as "{'en': ...}"
    ("query", ["tea", "green"], "a list"),
    ("label", {"grade": "E"}, "an object"),
    ("product_id", [1, 2], "a list"),
])
def test_jsonl_objects_and_lists_in_text_fields_are_refused(tmp_path: Path, field: str,
                                                            value: object, got: str) -> None:
    row = {"query": "tea", "title": "green tea", "label": "E", field: value}
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"query": "tea", "title": "kettle"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(UserError, match=rf"^{f}:2: field '{field}': expected text or a number, "
                                        rf"got {got}$"):
        data.load(f)


def test_parquet_list_and_struct_columns_are_refused(esci_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.relevance.conftest import ESCI_PRODUCT_HEADER, ESCI_PRODUCTS

    products = [dict(zip(ESCI_PRODUCT_HEADER, r)) for r in ESCI_PRODUCTS]
    for p in products:
        p["product_bullet_point"] = ["mesh", "size 9"]  # a list column, as some exports have
    for old in esci_dir.glob("*products*"):
        old.unlink()
    path = esci_dir / "shopping_queries_dataset_products.parquet"
    pq.write_table(pa.Table.from_pylist(products), path)
    with pytest.raises(UserError, match=rf"^{path}:2: field 'product_bullet_point': expected "
                                        "text or a number, got a list$"):
        data.load(esci_dir)


@pytest.mark.parametrize(("content", "why"), [
    (b"", "an empty file"), (b"example_id,query\n0,tea\n", "not a readable parquet file"),
])
def test_a_parquet_file_that_is_not_parquet_is_one_line(esci_dir: Path, content: bytes, why: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    for old in esci_dir.glob("*examples*"):
        old.unlink()
    path = esci_dir / "shopping_queries_dataset_examples.parquet"
    path.write_bytes(content)  # a CSV renamed .parquet, or a zero-byte download
    assert agpo_main(["relevance", "stats", "--data", str(esci_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: {why}") and err.count("\n") == 1, err


def test_stats_shows_the_join_misses_when_no_pair_joins(esci_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.relevance.conftest import ESCI_PRODUCT_HEADER

    for old in esci_dir.glob("*products*"):
        old.unlink()
    other = [("Z9", "a product no example names", "", "", "", "", "us")]
    pq.write_table(pa.Table.from_pylist([dict(zip(ESCI_PRODUCT_HEADER, r)) for r in other]),
                   esci_dir / "shopping_queries_dataset_products.parquet")
    assert agpo_main(["relevance", "stats", "--data", str(esci_dir), "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert (report["examples"], report["join_misses"]) == (6, 6)
    assert "no pairs: 6 example(s) read, 6 missed the join" in err
    # Commands that need pairs say where they went, instead of a bare "no pairs".
    assert agpo_main(["relevance", "evaluate", "--data", str(esci_dir), "--split", "",
                      "--labels", "x.jsonl"]) == 2
    assert "no pairs: 6 example(s) read, 6 missed the join" in capsys.readouterr().err


def test_config_that_is_a_directory_says_so(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert agpo_main(["relevance", "stats", "--config", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: --config {tmp_path}: is a directory; give a YAML "
                                       "file\n")


def test_annotation_rows_are_checked(tmp_path: Path) -> None:
    from agpo.apps.relevance.cli import read_annotations

    f = tmp_path / "ann.jsonl"
    f.write_text('{"query_id": "q", "product_id": "p", "label": "E", "confidence": 1.0}\n[1]\n')
    with pytest.raises(UserError, match=rf"^{f}:2: expected a JSON object, got list"):
        read_annotations(f)
    f.write_text('{"query_id": {"a": 1}, "product_id": "p", "label": "E"}\n')
    with pytest.raises(UserError, match=rf"^{f}:1: not an annotation row"):
        read_annotations(f)
    f.write_text('{"query_id": "q", "product_id": "p", "label": "E", "confidence": "high"}\n')
    with pytest.raises(UserError, match=rf"^{f}:1: field 'confidence': expected a finite number"):
        read_annotations(f)
