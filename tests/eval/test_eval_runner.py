"""End-to-end eval of the conftest tiny model on a small fixture: outputs, resume, agreement."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import agpo.rollout.engines as engines
from agpo.errors import UserError
from agpo.eval.cli import evaluate
from agpo.eval.passk_cli import main as passk_main
from agpo.eval.runner import batches, evaluate_items
from agpo.eval.samples import iter_rows
from agpo.rewards import RewardConfig, build_reward
from agpo.rollout import SamplingConfig
from agpo.tasks import load_task, write_items
from agpo.types import TaskItem

# Small enough for 2 shared cores; batch 5 over 3×16 units makes batches straddle problems.
# One-token answers, so the random tiny model repeats some of them within 16 samples.
SETTINGS = dict(temperature=1.0, top_p=1.0, max_new_tokens=1, batch_size=5, workers=0,
                progress=False)
N = 16


@pytest.fixture(scope="module")
def task_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three problems whose golds are answers the random tiny model actually gives.

    The golds do not change what is sampled (same prompts, same seeded batches), so a dry run
    with placeholder golds shows which one-character answers the model will produce: p0 and p1
    take their first alphanumeric answer as gold (solved at least once), p2 keeps an
    impossible gold (never solved).
    """
    root = tmp_path_factory.mktemp("task")
    items = [TaskItem(id=f"p{i}", prompt=f"{i}+{i}=", gold="never", meta={"verifier": "exact"})
             for i in range(3)]
    evaluate(tiny_model_dir, str(write_items(items, root / "dry.jsonl")), N, root / "dry",
             **SETTINGS)
    answers = {pid: [r["completion"] for r in iter_rows(root / "dry" / "samples.jsonl")
                     if r["problem_id"] == pid and r["completion"].isalnum()]
               for pid in ("p0", "p1")}
    golds = {pid: a[0] for pid, a in answers.items()}
    items = [TaskItem(id=it.id, prompt=it.prompt, gold=golds.get(it.id, "never"),
                      meta=it.meta) for it in items]
    return write_items(items, root / "t.jsonl")


@pytest.fixture(scope="module")
def full_run(tiny_model_dir: Path, task_file: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("full")
    return out, evaluate(tiny_model_dir, str(task_file), N, out, **SETTINGS)


def _rows(out: Path) -> list[dict]:
    return sorted(iter_rows(out / "samples.jsonl"), key=lambda r: (r["problem_id"], r["sample"]))


def test_outputs_and_rows(full_run) -> None:
    out, result = full_run
    for name in ("config.json", "env.json", "problems.jsonl", "verified.json", "samples.jsonl",
                 "passk.json", "timing.json"):
        assert (out / name).exists(), name
    timing = json.loads((out / "timing.json").read_text())
    assert (timing["samples"], timing["tokens"]) == (3 * N, 3 * N) and timing["sample_s"] > 0
    rows = _rows(out)
    assert [(r["problem_id"], r["sample"]) for r in rows] == [
        (f"p{i}", s) for i in range(3) for s in range(N)]
    assert all(r["length"] == 1 and r["nll"] >= 0 for r in rows)
    assert json.loads((out / "passk.json").read_text()) == result
    assert [k for k in result if k.startswith("pass@")] == [
        "pass@1", "pass@2", "pass@4", "pass@8", "pass@16"]
    # p0 and p1 are solved at least once by construction, p2 never
    assert result["coverage"] == pytest.approx(2 / 3)
    assert 0 < result["pass@1"] < result["pass@16"] == pytest.approx(2 / 3)


def test_passk_matches_hand_count(full_run) -> None:
    out, result = full_run
    rows = _rows(out)
    # pass@k = mean over problems of 1 − C(n−c, k)/C(n, k), counted straight from the rows
    for k in (1, 2, 4, 8, 16):
        want = 0.0
        for pid in ("p0", "p1", "p2"):
            c = sum(r["correct"] for r in rows if r["problem_id"] == pid)
            want += 1 - math.comb(N - c, k) / math.comb(N, k)
        assert result[f"pass@{k}"] == pytest.approx(want / 3, abs=1e-12)
    assert result["avg@n"] == pytest.approx(sum(r["correct"] for r in rows) / len(rows))
    assert result["mean_length"] == pytest.approx(sum(r["length"] for r in rows) / len(rows))


def test_agpo_passk_agrees_with_passk_json(full_run, capsys: pytest.CaptureFixture) -> None:
    out, result = full_run
    assert passk_main(["--in", str(out / "samples.jsonl"), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    for key in ("pass@1", "pass@2", "pass@4", "pass@16", "avg@n", "coverage"):
        assert table[key] == result[key], key


def test_resume_after_kill_equals_uninterrupted(
    full_run, tiny_model_dir: Path, task_file: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _interrupt_on_third_batch(monkeypatch, tiny_model_dir, task_file, tmp_path, SETTINGS)
    # A kill in the middle of a write leaves a torn line and half of a batch.
    samples = tmp_path / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    assert len(lines) == 10  # two batches of 5
    assert json.loads((tmp_path / "timing.json").read_text())["samples"] == 10  # kept batch by batch
    samples.write_text("".join(lines[:7]) + lines[7][:20])

    resumed = evaluate(tiny_model_dir, str(task_file), N, tmp_path, **SETTINGS)
    full_out, full_result = full_run
    assert _rows(tmp_path) == _rows(full_out)
    assert resumed == full_result
    # the time of both invocations: the first one's 10 rows (3 of them since lost), then the
    # 3N − 7 missing rows, sampled as whole batches (the torn batch's 5 units for its 3 rows)
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert (timing["samples"], timing["tokens"]) == (10 + 3 * N - 7, 10 + 3 * N - 10 + 5)


def test_resume_refuses_other_settings(full_run, tiny_model_dir: Path, task_file: Path) -> None:
    out, _ = full_run
    with pytest.raises(UserError, match=r"--temperature 1.0 → 0.5"):
        evaluate(tiny_model_dir, str(task_file), N, out, **{**SETTINGS, "temperature": 0.5})


def test_a_failed_eval_unlocks_its_out_at_once(
    full_run, tiny_model_dir: Path, task_file: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The caught exception stays referenced: its traceback keeps the failed eval's frames (and
    # whatever they hold) alive, so only the eval's own release frees --out, not the collector.
    real_sample = engines.sample
    calls = {"n": 0}

    def fails_on_second_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("sampler crashed")
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(engines, "sample", fails_on_second_batch)
    with pytest.raises(RuntimeError, match="sampler crashed") as failed:
        evaluate(tiny_model_dir, str(task_file), N, tmp_path, **SETTINGS)
    monkeypatch.setattr(engines, "sample", real_sample)
    # a refusal after the lock was taken (other settings) releases it too
    with pytest.raises(UserError, match=r"--temperature 1.0 → 0.5") as refused:
        evaluate(tiny_model_dir, str(task_file), N, tmp_path, **{**SETTINGS, "temperature": 0.5})

    resumed = evaluate(tiny_model_dir, str(task_file), N, tmp_path, **SETTINGS)
    assert failed.value.__traceback__ is not None and refused.value.__traceback__ is not None
    full_out, full_result = full_run
    assert _rows(tmp_path) == _rows(full_out)
    assert resumed == full_result


def test_in_memory_eval_equals_file_eval(full_run, tiny_model_dir: Path, task_file: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    sampling = SamplingConfig(max_new_tokens=1, top_p=1.0, temperature=1.0, batch_size=5)
    with build_reward(RewardConfig(verifier="exact", workers=0)) as rf:
        got = evaluate_items(model, tok, load_task(str(task_file)), N, sampling, rf, None,
                             progress=False)
    _, want = full_run
    assert got == {k: v for k, v in want.items() if k not in ("task", "model")}


def test_batches_tile_the_grid() -> None:
    # 3 problems × 4 samples in batches of 5: units 0–4, 5–9, 10–11
    assert [(b, list(u)) for b, u in batches(3, 4, 5)] == [
        (0, [0, 1, 2, 3, 4]), (1, [5, 6, 7, 8, 9]), (2, [10, 11])]


def test_bad_model_dir_is_a_user_error(task_file: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a from_pretrained folder"):
        evaluate(tmp_path / "nope", str(task_file), 2, tmp_path / "out", **SETTINGS)


def test_overlapped_verification_equals_serial(full_run, tiny_model_dir: Path, task_file: Path,
                                               tmp_path: Path) -> None:
    # workers=1: each batch is verified on RewardFn's helper thread while the next one samples
    # (workers=0 above verifies in line); the rows on disk and the metrics are the same.
    result = evaluate(tiny_model_dir, str(task_file), N, tmp_path, **{**SETTINGS, "workers": 1})
    full_out, full_result = full_run
    assert result == full_result
    got, want = tmp_path / "samples.jsonl", full_out / "samples.jsonl"
    assert list(iter_rows(got)) == list(iter_rows(want))


def test_overlapped_resume_keeps_the_verified_batch(
    full_run, tiny_model_dir: Path, task_file: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Interrupted while sampling batch 3, batch 2 is sampled and under verification: it is
    # still written (10 rows, as in the serial loop), and resume completes the grid.
    settings = {**SETTINGS, "workers": 1}
    _interrupt_on_third_batch(monkeypatch, tiny_model_dir, task_file, tmp_path, settings)
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 10
    resumed = evaluate(tiny_model_dir, str(task_file), N, tmp_path, **settings)
    full_out, full_result = full_run
    assert resumed == full_result
    got, want = tmp_path / "samples.jsonl", full_out / "samples.jsonl"
    assert list(iter_rows(got)) == list(iter_rows(want))


def test_batch_is_verified_while_the_next_samples(
    tiny_model_dir: Path, task_file: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from concurrent.futures import Future

    from transformers import AutoModelForCausalLM, AutoTokenizer

    events: list[str] = []
    real_sample = engines.sample

    def logged_sample(*args, **kwargs):
        events.append("sample")
        return real_sample(*args, **kwargs)

    class Recorder:
        """A reward_fn whose futures log when the eval collects them."""

        def __init__(self, inner) -> None:
            self.inner = inner

        def batch(self, items, completions):
            return self.inner.batch(items, completions)

        def submit(self, items, completions) -> Future:
            events.append("submit")
            fut: Future = Future()
            fut.set_result(self.inner.batch(items, completions))
            real_result = fut.result
            fut.result = lambda timeout=None: (events.append("collect"), real_result())[1]
            return fut

    monkeypatch.setattr(engines, "sample", logged_sample)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    sampling = SamplingConfig(max_new_tokens=1, top_p=1.0, temperature=1.0, batch_size=20)
    with build_reward(RewardConfig(verifier="exact", workers=0)) as rf:
        evaluate_items(model, tok, load_task(str(task_file)), N, sampling, Recorder(rf), None,
                       progress=False)
    # 48 units in batches of 20: batch b is collected only after batch b+1 has sampled
    assert events == ["sample", "submit", "sample", "submit", "collect",
                      "sample", "submit", "collect", "collect"]


def _interrupt_on_third_batch(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path, task_file: Path, out: Path, settings: dict
) -> None:
    """Run an eval into ``out`` that is interrupted (Ctrl-C) when it samples its third batch."""
    calls = {"n": 0}
    real_sample = engines.sample

    def dies_on_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(engines, "sample", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model_dir, str(task_file), N, out, **settings)
    monkeypatch.setattr(engines, "sample", real_sample)


# --------------------------------------------------------------------------- settings that match training


def _train_one_step(model_dir: Path, task_file: Path, out: Path) -> Path:
    """A one-step training run of the tiny model whose rollouts use 3 new tokens at τ 0.7."""
    from agpo.train import load_config, train

    cfg = load_config(None, [
        "--model.path", str(model_dir), "--model.device", "cpu", "--task.spec", str(task_file),
        "--rollout.max-new-tokens", "3", "--rollout.temperature", "0.7",
        "--reward.verifier", "exact", "--reward.workers", "0", "--train.steps", "1",
        "--train.prompts-per-step", "2", "--train.group-size", "2", "--train.threads", "1",
        "--log.no-progress"])
    return train(cfg, out)


def test_eval_of_a_checkpoint_samples_as_its_run_did(
    tiny_model_dir: Path, task_file: Path, tmp_path: Path,
) -> None:
    run = _train_one_step(tiny_model_dir, task_file, tmp_path / "run")
    said: list[str] = []
    from agpo.eval.cli import EvalArgs, run as run_eval

    # The run directory stands for its last checkpoint; its settings come from the checkpoint.
    result = run_eval(EvalArgs(model=str(run), task=str(task_file), n=2, out=tmp_path / "ev",
                               workers=0, progress=False), say=said.append)
    cfg = json.loads((tmp_path / "ev" / "config.json").read_text())
    ckpt = run / "checkpoints" / "step_1"
    assert result["model"] == cfg["model"] == str(ckpt)
    assert (cfg["template"], cfg["max_new_tokens"], cfg["temperature"], cfg["top_p"]) == (
        "plain", 3, 0.7, 1.0)
    assert said[-1] == cfg["sources"] == (
        f"sampling: template plain, max-new-tokens 3, temperature 0.7, top-p 1.0 from "
        f"{ckpt / 'run_config.json'}")
    assert all(r["length"] <= 3 for r in iter_rows(tmp_path / "ev" / "samples.jsonl"))

    # A flag still wins, and is said to; a checkpoint without run_config.json (an older agpo)
    # reads the run's config.yaml next to checkpoints/.
    (ckpt / "run_config.json").unlink()
    run_eval(EvalArgs(model=str(ckpt), task=str(task_file), n=2, out=tmp_path / "ev2",
                      temperature=1.0, workers=0, progress=False), say=said.append)
    assert said[-1] == (f"sampling: temperature 1.0 as given; template plain, max-new-tokens 3, "
                        f"top-p 1.0 from {run / 'config.yaml'}")


def test_a_model_with_a_chat_template_is_evaluated_with_it(
    tiny_model_dir: Path, task_file: Path, tmp_path: Path,
) -> None:
    import shutil

    from transformers import AutoTokenizer

    model = tmp_path / "chat_model"
    shutil.copytree(tiny_model_dir, model)
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = "{% for m in messages %}<{{ m['content'] }}>{% endfor %}"
    tok.save_pretrained(model)
    evaluate(model, str(task_file), 2, tmp_path / "ev", max_new_tokens=1, workers=0,
             progress=False)
    cfg = json.loads((tmp_path / "ev" / "config.json").read_text())
    assert cfg["template"] == "chat"
    assert "template chat (the model has a chat template)" in cfg["sources"]
    assert [json.loads(x)["prompt"] for x in
            (tmp_path / "ev" / "problems.jsonl").read_text().splitlines()][0] == "0+0="


def test_the_default_token_cap_is_the_most_that_fits(
    tiny_model_dir: Path, task_file: Path, tmp_path: Path,
) -> None:
    # The tiny model has 256 positions and the longest prompt ("2+2=") takes 4 tokens: 1,024 new
    # tokens do not fit (the eval used to refuse its own default); 252 do.
    result = evaluate(tiny_model_dir, str(task_file), 1, tmp_path / "ev", temperature=1.0,
                      workers=0, progress=False)
    cfg = json.loads((tmp_path / "ev" / "config.json").read_text())
    assert cfg["max_new_tokens"] == 252
    assert "max-new-tokens 252 (the most the model's 256 positions leave" in cfg["sources"]
    assert result["num_samples"] == 3
    with pytest.raises(UserError, match=r"--max-new-tokens 1024: the model has only 256 "
                                        r"positions; lower it \(at most 252 fit"):
        evaluate(tiny_model_dir, str(task_file), 1, tmp_path / "ev2", max_new_tokens=1024,
                 workers=0, progress=False)


# --------------------------------------------------------------------------- samples that went stale


@pytest.fixture
def evaluated(full_run, task_file: Path, tmp_path: Path) -> Path:
    """A copy of the task file (tmp_path/t.jsonl) and of the full eval of it (tmp_path/ev),
    as one `agpo eval --task tmp_path/t.jsonl --out tmp_path/ev` leaves them."""
    import shutil

    task = tmp_path / "t.jsonl"
    shutil.copy(task_file, task)
    shutil.copytree(full_run[0], tmp_path / "ev")
    config = json.loads((tmp_path / "ev" / "config.json").read_text())
    (tmp_path / "ev" / "config.json").write_text(json.dumps({**config, "task": str(task)}))
    return task


def _edit(task: Path, pid: str, **change: str) -> None:
    rows = [json.loads(x) for x in task.read_text().splitlines()]
    for r in rows:
        if r["id"] == pid:
            r.update(change)
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_gold_edit_re_verifies_the_samples_of_that_problem(
    evaluated: Path, tiny_model_dir: Path, tmp_path: Path,
) -> None:
    from agpo.eval.cli import EvalArgs, run as run_eval

    # p0 was solved; its gold is now an answer the model never gives. The same command again:
    _edit(evaluated, "p0", gold="never")
    said: list[str] = []
    args = EvalArgs(model=str(tiny_model_dir), task=str(evaluated), n=N, out=tmp_path / "ev",
                    **SETTINGS)
    after = run_eval(args, say=said.append)
    fresh = evaluate(tiny_model_dir, str(evaluated), N, tmp_path / "fresh", **SETTINGS)
    assert after == fresh and after["coverage"] == pytest.approx(1 / 3)
    assert _rows(tmp_path / "ev") == _rows(tmp_path / "fresh")
    assert said[0].startswith("sampling: ")
    assert f"re-verified {N} samples of 1 problem(s)" in said[1] and said[1].endswith(": p0")
    # A third run has nothing left to re-verify.
    said.clear()
    assert run_eval(args, say=said.append) == fresh and len(said) == 1


def test_a_prompt_edit_is_refused_naming_the_problem(
    evaluated: Path, tiny_model_dir: Path, tmp_path: Path,
) -> None:
    samples = (tmp_path / "ev" / "samples.jsonl").read_bytes()
    _edit(evaluated, "p1", prompt="9+9=")
    with pytest.raises(UserError, match=r"samples of problems with another prompt now: p1;"):
        evaluate(tiny_model_dir, str(evaluated), N, tmp_path / "ev", **SETTINGS)
    assert (tmp_path / "ev" / "samples.jsonl").read_bytes() == samples


def test_a_changed_verifier_re_verifies_every_sample(
    evaluated: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agpo.eval.runner as runner
    from agpo.eval.cli import EvalArgs, run as run_eval

    # What a fix to the grader looks like to a resumed eval: the same settings, other code.
    monkeypatch.setattr(runner, "verifier_code", lambda: "a fixed grader")
    said: list[str] = []
    run_eval(EvalArgs(model=str(tiny_model_dir), task=str(evaluated), n=N, out=tmp_path / "ev",
                      **SETTINGS), say=said.append)
    assert f"re-verified {3 * N} samples of 3 problem(s) whose gold answer or verifier" in said[1]


def test_an_eval_from_before_verified_json_is_checked_against_its_problems_file(
    evaluated: Path, tiny_model_dir: Path, tmp_path: Path,
) -> None:
    (tmp_path / "ev" / "verified.json").unlink()  # what an older agpo left
    _edit(evaluated, "p0", gold="never")
    after = evaluate(tiny_model_dir, str(evaluated), N, tmp_path / "ev", **SETTINGS)
    assert after == evaluate(tiny_model_dir, str(evaluated), N, tmp_path / "fresh", **SETTINGS)


# --------------------------------------------------------------------------- progress, JSON


def test_the_progress_bar_counts_samples_as_they_land(
    tiny_model_dir: Path, task_file: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agpo.eval.runner as runner
    from transformers import AutoModelForCausalLM, AutoTokenizer

    events: list[str] = []
    real_sample = engines.sample

    class Bar:
        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

        def add_task(self, *args, **kwargs) -> int:
            return 0

        def advance(self, task: int, units: int) -> None:
            events.append(f"+{units}")

    monkeypatch.setattr(runner, "_progress", lambda enabled: Bar())
    monkeypatch.setattr(engines, "sample",
                        lambda *a, **k: (events.append("sample"), real_sample(*a, **k))[1])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    sampling = SamplingConfig(max_new_tokens=1, top_p=1.0, temperature=1.0, batch_size=20)
    with build_reward(RewardConfig(verifier="exact", workers=0)) as rf:
        evaluate_items(model, tok, load_task(str(task_file)), N, sampling, rf, None)
    # 48 samples in batches of 20: each batch counts the moment it is sampled
    assert events == ["sample", "+20", "sample", "+20", "sample", "+8"]


def test_eval_json_is_strict(tmp_path: Path) -> None:
    from agpo.eval.runner import write_json

    write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": tmp_path})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [1.0, None],
                                                            "c": str(tmp_path)}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left
