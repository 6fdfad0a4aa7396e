"""`agpo passk`: exact values on a large interleaved file, JSON/table output, clear errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from fractions import Fraction
from math import comb

import pytest

from agpo.cli import main as agpo
from agpo.errors import UserError
from agpo.eval.passk_cli import main


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_exact_on_large_interleaved_file(tmp_path, capsys):
    rng = random.Random(0)
    counts = {f"p{i}": (300 + 7 * i, rng.randint(0, 40)) for i in range(12)}  # (n, c); n_min = 300
    rows = [
        {"problem_id": pid, "correct": j < c} for pid, (n, c) in counts.items() for j in range(n)
    ]
    rng.shuffle(rows)
    got = run_json(capsys, "--in", str(write(tmp_path / "s.jsonl", rows)))
    assert got["num_problems"] == 12 and got["n"] == 300 and got["limited_by"] == "p0"
    ks = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert [key for key in got if key.startswith("pass@")] == [f"pass@{k}" for k in ks]
    for k in ks:
        want = sum(1 - Fraction(comb(n - c, k), comb(n, k)) for n, c in counts.values()) / 12
        assert got[f"pass@{k}"] == pytest.approx(float(want), rel=1e-11)
    assert got["avg@n"] == pytest.approx(sum(c / n for n, c in counts.values()) / 12)


def test_scores_and_threshold(tmp_path, capsys):
    rows = [{"problem_id": 1, "score": s} for s in (1.0, 0.5, 0.0, 1)]
    path = str(write(tmp_path / "s.jsonl", rows))
    assert run_json(capsys, "--in", path)["pass@1"] == pytest.approx(0.5)  # score ≥ 1 by default
    assert run_json(capsys, "--in", path, "--threshold", "0.5")["pass@1"] == pytest.approx(0.75)


def test_table_names_the_limiting_problem(tmp_path, capsys):
    rows = [{"problem_id": "a", "correct": True}] * 5 + [{"problem_id": "b", "correct": False}] * 3
    assert main(["--in", str(write(tmp_path / "s.jsonl", rows))]) == 0
    out = capsys.readouterr().out
    assert "pass@k" in out and "'b'" in out and "limited to 3" in out


@pytest.mark.parametrize(
    "line, msg",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"correct": true}', "problem_id: missing"),
        ('{"problem_id": 1}', "correct: missing"),
        ('{"problem_id": 1, "correct": "yes"}', "correct: expected true or false"),
        ('{"problem_id": 1, "score": "1"}', "score: expected a finite number"),
        ('{"problem_id": 1, "score": NaN}', "score: expected a finite number"),
        ('{"problem_id": [1], "correct": true}', "problem_id: expected a string or integer"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, line, msg):
    path = write(tmp_path / "s.jsonl", ['{"problem_id": 1, "correct": true}', "", line])
    with pytest.raises(UserError, match=rf"s\.jsonl:3: {msg}"):
        main(["--in", str(path)])


def test_empty_file_is_an_error(tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(UserError, match="no samples"):
        main(["--in", str(path)])
    assert agpo(["passk", "--in", str(path)]) == 2  # the dispatcher: one line, exit 2
    assert "error:" in capsys.readouterr().err


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        main(["--in", str(tmp_path / "nope.jsonl")])


def test_command_starts_without_torch():
    code = "import sys, agpo.eval.passk_cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_repeated_row_counts_once_and_stderr_says_so(tmp_path, capsys):
    # Four copies of one sample and three other samples: n = 4, not 7.
    rows = [{"problem_id": "a", "sample": 0, "correct": True, "tags": ["x"]}] * 4
    rows += [{"problem_id": "a", "sample": s, "correct": False} for s in (1, 2, 3)]
    assert main(["--in", str(write(tmp_path / "s.jsonl", rows)), "--json"]) == 0
    out, err = capsys.readouterr()
    got = json.loads(out)
    assert (got["n"], got["num_samples"], got["pass@1"]) == (4, 4, 0.25)
    assert "3 row(s) repeat an earlier row of the same (problem_id, sample) exactly" in err
    assert "(the first on line 2)" in err


def test_two_different_rows_with_one_index_are_refused(tmp_path):
    rows = [{"problem_id": "a", "sample": 0, "correct": True},
            {"problem_id": "a", "sample": 1, "correct": False},
            {"problem_id": "a", "sample": 0, "correct": False}]
    with pytest.raises(UserError, match=r"s\.jsonl:3: sample: problem 'a' sample 0 is already on "
                                        r"line 1, with other content"):
        main(["--in", str(write(tmp_path / "s.jsonl", rows))])



def test_a_directory_is_not_called_missing(tmp_path):
    with pytest.raises(UserError, match=r"is a directory; give a samples file"):
        main(["--in", str(tmp_path)])
