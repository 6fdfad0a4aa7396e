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
