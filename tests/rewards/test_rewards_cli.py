"""``agpo verify``: rows in, verdict rows out in order; malformed rows named by file:line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agpo.errors import UserError
from agpo.rewards.cli import main

pytestmark = pytest.mark.timeout(120)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_verdict_rows_in_order(tmp_path: Path) -> None:
    pairs = write(tmp_path / "pairs.jsonl", [
        json.dumps({"gold": "025", "pred": "The answer is \\boxed{25}."}),
        json.dumps({"gold": "\\frac{1}{2}", "pred": "0.5", "id": "q2"}),
        "",  # blank lines are not rows
        json.dumps({"gold": 18, "pred": "#### 17"}),
        json.dumps({"gold": "(1,3)", "pred": "[1,3]"}),
    ])
    out = tmp_path / "out.jsonl"
    argv = ["--task", "math", "--in", str(pairs), "--out", str(out), "--reward.workers", "1"]
    assert main(argv) == 0
    assert read_rows(out) == [
        {"score": 1.0, "parsed": "25", "failure": None},
        {"id": "q2", "score": 1.0, "parsed": "0.5", "failure": None},
        {"score": 0.0, "parsed": "17", "failure": "wrong"},
        {"score": 0.0, "parsed": "[1,3]", "failure": "wrong"},
    ]


def test_stdin_to_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"gold": "E", "pred": "Label: E"}\n'))
    assert main(["--task", "label", "--in", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == {"score": 1.0, "parsed": "E", "failure": None}


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"gold": "1"}', "bad.jsonl:2: field 'pred': missing"),
        ("[1, 2]", "bad.jsonl:2: expected a JSON object, got list"),
        ("not json", "bad.jsonl:2: not a JSON object"),
        ('{"gold": null, "pred": "1"}', "bad.jsonl:2: field 'gold': expected a string"),
    ],
)
def test_malformed_row_stops_with_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    bad = write(tmp_path / "bad.jsonl", [json.dumps({"gold": "1", "pred": "1"}), line])
    out = tmp_path / "out.jsonl"
    with pytest.raises(UserError) as e:
        main(["--task", "exact", "--in", str(bad), "--out", str(out)])
    assert str(e.value).startswith(f"{tmp_path}/{message}")
    assert not out.exists()  # nothing is written before the input is known to be good


def test_skip_bad_reports_how_many(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.jsonl", ['{"gold": "1"}', '{"gold": "1", "pred": "1"}', "oops"])
    assert main(["--task", "exact", "--in", str(bad), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(x)["score"] for x in captured.out.splitlines()] == [1.0]
    assert "skipped 2 malformed row(s)" in captured.err


def test_missing_input_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot open"):
        main(["--in", str(tmp_path / "nope.jsonl")])


@pytest.mark.parametrize("line, msg", [
    ('{"gold": "1", "pred": ' + "[" * 10_000 + "]" * 10_000 + "}", "nested too deeply"),
    ('{"gold": "1", "pred": ' + "9" * 5000 + "}", "4300 digits"),
])
def test_hostile_rows_are_named_not_a_traceback(tmp_path: Path, line: str, msg: str) -> None:
    pairs = write(tmp_path / "pairs.jsonl", [json.dumps({"gold": "1", "pred": "1"}), line])
    with pytest.raises(UserError, match=rf"pairs\.jsonl:2: not a JSON object \(.*{msg}"):
        main(["--task", "math", "--in", str(pairs), "--out", str(tmp_path / "o.jsonl")])


def test_a_prompt_field_lets_the_verifier_see_the_question(tmp_path: Path) -> None:
    pairs = write(tmp_path / "pairs.jsonl", [
        json.dumps({"gold": "370", "pred": "The answer is 74 * 5.", "prompt": "What is 74 * 5?"}),
        json.dumps({"gold": "30", "pred": "So, there are 30 eggs in 5 boxes.",
                    "prompt": "Tom buys 5 boxes of 6 eggs. How many eggs does he buy?"}),
        json.dumps({"gold": "30", "pred": "So, there are 30 eggs in 5 boxes."}),  # no question
    ])
    out = tmp_path / "out.jsonl"
    assert main(["--in", str(pairs), "--out", str(out), "--reward.workers", "1"]) == 0
    assert [(r["score"], r["failure"]) for r in read_rows(out)] == [
        (0.0, "restated"), (1.0, None), (0.0, "wrong")]


def test_a_prompt_that_is_not_a_string_is_named(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.jsonl", [json.dumps({"gold": "1", "pred": "1", "prompt": 7})])
    with pytest.raises(UserError, match=r"bad\.jsonl:1: field 'prompt': expected a string"):
        main(["--in", str(bad), "--out", str(tmp_path / "o.jsonl")])
