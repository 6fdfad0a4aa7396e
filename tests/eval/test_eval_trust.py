"""Issue 14 in evaluation: one pass@k rule for unusable gold answers, hostile rows named by
file:line:field, and an --out that is not an eval left alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agpo.errors import UserError
from agpo.eval.cli import EvalArgs, run
from agpo.eval.passk_cli import main as passk
from agpo.eval.report import build_report
from agpo.eval.summary import summarize_samples


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _rows() -> list[dict]:
    # Problem a: 1 of 2 correct. Problem b: gold unusable, both rows bad_gold (score 0).
    # Skipping b: pass@1 = 1/2. Counting b as wrong (what `agpo passk` did): (1/2 + 0)/2 = 1/4.
    return [
        {"problem_id": "a", "sample": 0, "correct": True, "score": 1.0, "failure": None, "parsed": "1", "length": 3},
        {"problem_id": "a", "sample": 1, "correct": False, "score": 0.0, "failure": "wrong", "parsed": "2", "length": 3},
        {"problem_id": "b", "sample": 0, "correct": False, "score": 0.0, "failure": "bad_gold", "parsed": "1", "length": 3},
        {"problem_id": "b", "sample": 1, "correct": False, "score": 0.0, "failure": "bad_gold", "parsed": "1", "length": 3},
    ]


def test_passk_and_eval_skip_bad_gold_problems_alike(tmp_path, capsys):
    path = _write(tmp_path / "samples.jsonl", _rows())
    assert passk(["--in", str(path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["pass@1"] == 0.5 and got["skipped_problems"] == 1 and got["num_problems"] == 1
    assert got == summarize_samples(path)  # one summary: passk.json's numbers exactly
    assert passk(["--in", str(path)]) == 0
    assert "1 problem(s) skipped" in capsys.readouterr().out


def test_passk_with_only_bad_gold_is_an_error(tmp_path):
    path = _write(tmp_path / "s.jsonl", _rows()[2:])
    with pytest.raises(UserError, match="all 1 problems were skipped"):
        passk(["--in", str(path)])


def test_passk_threshold_nan_is_refused(tmp_path, capsys):
    path = _write(tmp_path / "s.jsonl", _rows())
    with pytest.raises((UserError, SystemExit)) as err:
        passk(["--in", str(path), "--threshold", "nan"])
    message = str(err.value) if err.type is UserError else capsys.readouterr().err
    assert "--threshold" in message


@pytest.mark.parametrize("line, msg", [
    ('{"problem_id": "a", "correct": true, "x": ' + "[" * 10_000 + "]" * 10_000 + "}", "nested too deeply"),
    ('{"problem_id": "a", "score": ' + "9" * 5000 + "}", "4300 digits"),
    ('{"problem_id": "a", "score": 1' + "0" * 400 + "}", "score: expected a finite number"),
])
def test_hostile_rows_name_file_and_line(tmp_path, line, msg):
    path = _write(tmp_path / "s.jsonl", [_rows()[0], line])
    with pytest.raises(UserError, match=rf"s\.jsonl:2: .*{msg}"):
        passk(["--in", str(path)])


def test_report_names_a_non_numeric_length_or_step(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "config.json").write_text(json.dumps({"task": "t", "n": 2, "model": "m"}))
    rows = _rows()[:2]
    rows[1]["length"] = "long"
    _write(ev / "samples.jsonl", rows)
    with pytest.raises(UserError, match=r"samples\.jsonl:2: length: expected an integer"):
        build_report([ev], tmp_path / "r.html")
    runs = tmp_path / "run"
    runs.mkdir()
    _write(runs / "metrics.jsonl", [{"step": 1, "reward/mean": 0.5}, {"step": "two", "reward/mean": 0.5}])
    with pytest.raises(UserError, match=r"metrics\.jsonl:2: field 'step': expected an integer"):
        build_report([runs], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("kind", ["training run", "model folder", "file"])
def test_eval_out_that_is_not_an_eval_is_left_alone(tmp_path, kind):
    task = _write(tmp_path / "task.jsonl", [{"id": "p", "prompt": "1+1=", "gold": "2"}])
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("mine")
    else:
        out.mkdir()
        mine = out / ("config.yaml" if kind == "training run" else "config.json")
        mine.write_text("model_type: llama\n" if kind == "training run" else '{"model_type": "llama"}')
    before = {p: p.read_bytes() for p in ([out] if kind == "file" else out.iterdir())}
    with pytest.raises(UserError, match="is a file|not an agpo eval"):
        run(EvalArgs(model=str(tmp_path / "no-model"), task=str(task), out=out, n=1, progress=False))
    after = {p: p.read_bytes() for p in ([out] if kind == "file" else out.iterdir())}
    assert after == before


def test_a_second_eval_into_the_same_out_is_refused(tmp_path):
    from agpo.io import DirLock

    task = _write(tmp_path / "task.jsonl", [{"id": "p", "prompt": "1+1=", "gold": "2"}])
    out = tmp_path / "out"
    held = DirLock(out, "--out")  # what a running `agpo eval --out out` holds
    try:
        with pytest.raises(UserError, match="another agpo process is writing"):
            run(EvalArgs(model=str(tmp_path / "m"), task=str(task), out=out, n=1, progress=False))
    finally:
        held.release()


@pytest.mark.parametrize("chars", [300, 2_000_000])
def test_eval_refuses_a_prompt_longer_than_the_model(tiny_model_dir, tmp_path, chars):
    # The tiny model has 256 positions (one character per token); 16 new tokens leave 240 for
    # the prompt. 2 MB is refused before it is tokenized (over 64 characters per position).
    task = tmp_path / "long.jsonl"
    task.write_text(json.dumps({"id": "a", "prompt": "1+1=", "gold": "2"}) + "\n"
                    + json.dumps({"id": "b", "prompt": "1" * chars, "gold": "2"}) + "\n")
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"long\.jsonl:2: problem 'b'.*240"):
        run(EvalArgs(model=str(tiny_model_dir), task=str(task), out=out, n=1,
                     max_new_tokens=16, template="plain", progress=False))
    assert not (out / "samples.jsonl").exists()


@pytest.mark.parametrize("flag, value, msg", [
    ("temperature", 1e-45, r"--temperature 1e-45: must be in \[1e-30, 1e\+30\]"),
    ("temperature", 1e300, r"--temperature 1e\+300: must be in \[1e-30, 1e\+30\]"),
    ("temperature", float("nan"), r"--temperature nan: must be in"),
    ("top_p", 0.0, r"--top-p 0.0: must be in \(0, 1\]"),
    ("max_new_tokens", 0, r"--max-new-tokens 0: must be an integer ≥ 1"),
    ("batch_size", 0, r"--batch-size must be ≥ 1"),
    ("template", "nope", r"--template nope: valid: plain"),
])
def test_eval_flags_are_checked_in_eval_s_own_words(flag, value, msg):
    # Checked before anything is loaded, naming agpo eval's flags (not --rollout.*).
    with pytest.raises(UserError, match=msg) as err:
        EvalArgs(model="m", task="t", out=Path("o"), **{flag: value})
    assert "--rollout" not in str(err.value) and "--eval." not in str(err.value)


def test_the_float32_temperature_bounds_sample_finite_values(tiny_model_dir, tmp_path):
    from agpo.eval.samples import iter_rows

    task = _write(tmp_path / "task.jsonl", [{"id": "p", "prompt": "1+1=", "gold": "2"}])
    for tau in (1e-30, 1e30):
        out = tmp_path / f"out_{tau}"
        result = run(EvalArgs(model=str(tiny_model_dir), task=str(task), out=out, n=4,
                              temperature=tau, top_p=1.0, max_new_tokens=4, workers=0,
                              verifier="exact", progress=False))
        assert all(r["nll"] is not None and r["nll"] >= 0 for r in iter_rows(out / "samples.jsonl"))
        assert result["mean_token_entropy"] >= 0


def test_an_interrupted_eval_says_how_to_continue(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import agpo.rollout.engines as engines
    from agpo.cli import main as agpo

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engines, "sample", interrupted)
    task = _write(tmp_path / "task.jsonl", [{"id": "p", "prompt": "1+1=", "gold": "2"}])
    code = agpo(["eval", "--model", str(tiny_model_dir), "--task", str(task), "--n", "2",
                 "--max-new-tokens", "2", "--workers", "0", "--no-progress",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 130
    assert "re-run the same command" in err and "--resume" not in err
