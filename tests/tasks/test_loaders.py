"""Loaders read each benchmark's public layout; bad files fail with file:line and the fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.errors import UserError
from agpo.tasks import TASKS, load_task, write_items
from agpo.tasks.layouts import last_boxed, normalize_gold
from agpo.types import TaskItem

FIXTURES = Path(__file__).parent / "fixtures"

# (fixture, detected layout, golds in file order)
CASES = [
    ("gsm8k.jsonl", "gsm8k", ["72", "1080"]),  # after "####", thousands separator dropped
    ("math.jsonl", "math_solution", [r"\frac{14}{3}", "4"]),  # the LAST \boxed{} counts
    ("math500.jsonl", "problem_answer", [r"\text{Evelyn}", "28"]),
    ("aime24.jsonl", "problem_answer", ["204", "25"]),  # "025" is the integer 25
    ("aime25.jsonl", "question_answer", ["70", "25"]),
    ("amc23.jsonl", "question_answer", ["27", "0.75"]),  # JSON float 27.0 → "27"
    ("olympiadbench.jsonl", "olympiadbench", [r"\frac{1}{2}", "2, 3"]),  # list, $..$ stripped
    ("minerva_math.jsonl", "math_solution", ["0.49"]),
    ("cmath.jsonl", "cmath", ["9", "6.75"]),
    ("agieval_math.jsonl", "question_answer", ["5", r"\frac{14}{3}"]),
    ("agieval_sat_math.jsonl", "agieval_choice", ["B"]),
]


@pytest.mark.parametrize(("name", "layout", "golds"), CASES, ids=[c[0] for c in CASES])
def test_public_layouts(name: str, layout: str, golds: list[str]) -> None:
    items = load_task(str(FIXTURES / name))
    assert [it.gold for it in items] == golds
    assert {it.meta["layout"] for it in items} == {layout}
    assert all(it.prompt.strip() for it in items)
    assert len({it.id for it in items}) == len(items)


def test_ids_come_from_the_file_when_present() -> None:
    assert [it.id for it in load_task(str(FIXTURES / "math500.jsonl"))] == [
        "test/algebra/1189.json", "test/counting_and_probability/119.json"]
    assert [it.id for it in load_task(str(FIXTURES / "gsm8k.jsonl"))] == ["0", "1"]


def test_raw_gold_is_kept() -> None:
    items = load_task(str(FIXTURES / "aime24.jsonl"))
    assert items[1].meta["gold_raw"] == "025"


def test_multiple_choice_prompt_lists_options_and_uses_exact_verifier() -> None:
    (item,) = load_task(str(FIXTURES / "agieval_sat_math.jsonl"))
    assert "(B)5" in item.prompt and item.meta["verifier"] == "exact"


def test_json_and_parquet_read_like_jsonl(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "math500.jsonl").read_text().splitlines()]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    (tmp_path / "w.json").write_text(json.dumps({"data": rows}))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    want = load_task(str(FIXTURES / "math500.jsonl"))
    for name in ("m.json", "w.json", "m.parquet"):
        assert load_task(str(tmp_path / name)) == want


def test_unknown_layout_lists_found_and_expected_fields(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"q": "1+1?", "a": "2"}) + "\n")
    with pytest.raises(UserError) as e:
        load_task(str(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}:1: unknown layout: fields found: a, q;")
    assert "gsm8k: question+answer" in msg and "--fields prompt=FIELD,gold=FIELD" in msg


def test_fields_map_custom_names(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    rows = [{"q": "1+1?", "a": "2", "uid": "x1"}, {"q": "2+2?", "a": 4.0, "uid": "x2"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_task(str(path), fields="prompt=q,gold=a,id=uid")
    assert [(it.id, it.prompt, it.gold) for it in items] == [
        ("x1", "1+1?", "2"), ("x2", "2+2?", "4")]


@pytest.mark.parametrize("spec", ["prompt=q", "prompt", "answer=a,prompt=q"])
def test_bad_fields_spec_is_a_user_error(tmp_path: Path, spec: str) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"q": "1+1?", "a": "2"}) + "\n")
    with pytest.raises(UserError, match="--fields"):
        load_task(str(path), fields=spec)


def test_bad_rows_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "gold": "1"}\n\n{"prompt": "b"\n')
    with pytest.raises(UserError, match=rf"^{path}:3: not valid JSON"):
        load_task(str(path))
    path.write_text('{"prompt": "a", "gold": "1"}\n{"prompt": "b", "gold": ""}\n')
    with pytest.raises(UserError, match=rf"^{path}:2: field 'gold': missing or empty"):
        load_task(str(path))
    path.write_text('{"problem": "a", "solution": "no box here"}\n')
    with pytest.raises(UserError, match=rf"^{path}:1: field 'solution': no gold answer"):
        load_task(str(path))
    path.write_text('{"id": 1, "prompt": "a", "gold": "1"}\n'
                    '{"id": 1, "prompt": "b", "gold": "2"}\n')
    with pytest.raises(UserError, match=rf"^{path}:2: field 'id': duplicate id '1'"):
        load_task(str(path))


def test_unknown_name_lists_registered_tasks() -> None:
    with pytest.raises(UserError, match=r"registered: .*aime24.*gsm8k.*math500"):
        load_task("no_such_task")


def test_named_benchmark_reads_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "amc23").mkdir()
    (tmp_path / "amc23" / "test.jsonl").write_text((FIXTURES / "amc23.jsonl").read_text())
    monkeypatch.setenv("AGPO_DATA", str(tmp_path))
    assert [it.gold for it in load_task("amc23", limit=1)] == ["27"]
    assert "amc23" in TASKS


def test_generic_jsonl_round_trip(tmp_path: Path) -> None:
    items = [TaskItem(id="a", prompt="1+1=", gold="2", meta={"verifier": "exact"}),
             TaskItem(id="b", prompt="2+3=", gold="5")]
    back = load_task(str(write_items(items, tmp_path / "t.jsonl")))
    assert [(it.id, it.prompt, it.gold) for it in back] == [(i.id, i.prompt, i.gold) for i in items]
    assert back[0].meta["verifier"] == "exact"


def test_last_boxed_balances_braces() -> None:
    assert last_boxed(r"\boxed{1} then \boxed{\frac{a}{b^{2}}}") == r"\frac{a}{b^{2}}"
    assert last_boxed(r"\fbox{7}") == "7"
    assert last_boxed(r"\boxed{unclosed") is None
    assert last_boxed("no box") is None


@settings(deadline=None, derandomize=True, max_examples=60)
@given(st.integers(min_value=0, max_value=10**6))
def test_integer_golds_normalise_to_one_spelling(n: int) -> None:
    # 27, 27.0, "27", "27.0" and zero-padded "027" all name the same integer answer
    assert {normalize_gold(n), normalize_gold(float(n)), normalize_gold(str(n)),
            normalize_gold(f"{n}.0"), normalize_gold(f"{n:07d}")} == {str(n)}


@pytest.mark.parametrize(("row", "field", "got"), [
    ({"prompt": {"x": 1}, "gold": "2"}, "prompt", "an object"),  # would reach the model as "{'x': 1}"
    ({"prompt": ["a", "b"], "gold": "2"}, "prompt", "a list"),
    ({"prompt": "1+1=", "gold": {"value": 2}}, "gold", "an object"),
    ({"prompt": "1+1=", "gold": ["2"]}, "gold", "a list"),  # generic golds are one value
    ({"prompt": "1+1=", "gold": float("nan")}, "gold", "nan"),
    ({"id": {"n": 1}, "prompt": "1+1=", "gold": "2"}, "id", "an object"),
    ({"question": "q?", "final_answer": ["1", {"a": 2}]}, "final_answer", "an object"),
    ({"question": "q?", "options": [["A", "B"]], "label": "A"}, "options", "a list"),
    ({"passage": {"p": 1}, "question": "q?", "options": ["(A)1"], "label": "A"}, "passage",
     "an object"),
])
def test_objects_and_lists_in_text_fields_are_refused(tmp_path: Path, row: dict, field: str,
                                                      got: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"prompt": "ok", "gold": "1"}) + "\n" + json.dumps(row) + "\n")
    if "prompt" not in row:  # a layout of its own: the first record decides the layout
        path.write_text(json.dumps(row) + "\n")
    with pytest.raises(UserError, match=rf"^{path}:\d: field '{field}': expected text or a "
                                        rf"finite number.*, got {got}"):
        load_task(str(path))


def test_published_lists_still_read(tmp_path: Path) -> None:
    # OlympiadBench's answer list and a --fields gold list are joined; numbers are text.
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"question": "q?", "final_answer": ["1", 2]}) + "\n")
    assert load_task(str(path))[0].gold == "1, 2"
    path.write_text(json.dumps({"q": 12, "a": ["3", "4"]}) + "\n")
    (item,) = load_task(str(path), fields="prompt=q,gold=a")
    assert (item.prompt, item.gold) == ("12", "3, 4")


def test_the_same_rule_for_json_and_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": "a", "gold": {"v": "1"}}]
    (tmp_path / "t.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    for name in ("t.json", "t.parquet"):
        with pytest.raises(UserError, match=rf"{name}:1: field 'gold': expected text"):
            load_task(str(tmp_path / name))


def test_limit_stops_reading_the_file(tmp_path: Path) -> None:
    # Everything after the first 3 problems is unreadable: a loader that parsed the whole file
    # before slicing would fail; one that stops at 3 never sees it.
    path = tmp_path / "big.jsonl"
    good = "".join(json.dumps({"prompt": f"{i}+1=", "gold": str(i + 1)}) + "\n" for i in range(3))
    path.write_text(good + "{not json\n")
    assert [it.gold for it in load_task(str(path), limit=3)] == ["1", "2", "3"]
    with pytest.raises(UserError, match=r"big\.jsonl:4: not valid JSON"):
        load_task(str(path), limit=4)


def test_limit_streams_parquet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"{i}+1=", "gold": str(i + 1)} for i in range(10_000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet", row_group_size=1000)
    read: list[int] = []
    iter_batches = pq.ParquetFile.iter_batches

    def counted(self: pq.ParquetFile, *args: object, **kwargs: object):  # noqa: ANN202
        for batch in iter_batches(self, *args, **kwargs):
            read.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counted)
    assert [it.gold for it in load_task(str(tmp_path / "t.parquet"), limit=2)] == ["1", "2"]
    assert 0 < sum(read) < 10_000  # the first batch, not every row


def test_an_implicit_id_clash_says_which_id_was_implicit(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    # Line 1 has id "1"; line 2 has none, so its id is its position: "1" as well.
    path.write_text('{"id": "1", "prompt": "a", "gold": "1"}\n{"prompt": "b", "gold": "2"}\n')
    with pytest.raises(UserError) as e:
        load_task(str(path))
    assert str(e.value).startswith(f"{path}:2: implicit id '1': this record has no id field")
    assert "line 1's field 'id' already holds" in str(e.value)
    assert "field 'id': duplicate" not in str(e.value)
    path.write_text('{"prompt": "a", "gold": "1"}\n{"unique_id": "0", "prompt": "b", "gold": "2"}\n')
    with pytest.raises(UserError, match=rf"^{path}:2: field 'unique_id': id '0' is already the "
                                        r"implicit id of line 1"):
        load_task(str(path))


@pytest.mark.parametrize(("content", "why"), [
    (b"", "an empty file"), (b"prompt,gold\n1+1=,2\n", "not a readable parquet file"),
])
def test_a_file_that_is_not_parquet_is_one_line(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(content)
    with pytest.raises(UserError, match=rf"^{path}: {why}"):
        load_task(str(path))


def test_a_directory_or_bad_json_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(UserError, match=r"d\.jsonl: is a directory"):
        load_task(str(tmp_path / "d.jsonl"))
    (tmp_path / "t.json").write_bytes(b'[{"prompt": "\xff"}]')
    with pytest.raises(UserError, match=r"t\.json: not UTF-8 text"):
        load_task(str(tmp_path / "t.json"))


def test_written_items_are_strict_json(tmp_path: Path) -> None:
    items = [TaskItem(id="a", prompt="1+1=", gold="2", meta={"weight": float("nan")})]
    text = write_items(items, tmp_path / "t.jsonl").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} written")) == {
        "id": "a", "prompt": "1+1=", "gold": "2", "meta": {"weight": None}}
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]  # no temp file left behind
