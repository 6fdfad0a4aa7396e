"""The evaluation runner: sample n per problem, verify, append every sample, summarise.

The (problem, sample) grid is cut into fixed batches of ``sampling.batch_size`` units in
problem-major order, and batch b is sampled with a generator seeded by (seed, b). A batch is
therefore the same whichever run samples it, which is what makes a resumed eval equal to an
uninterrupted one: a restart skips the batches already on disk, re-samples a half-written one and
appends only its missing rows. Batch b's verification runs while batch b+1 samples
(``RewardFn.submit``); its rows are written after that, still in batch order. Completions are
written and dropped batch by batch; what stays in memory per sample is its extracted answer,
verdict and token statistics (``ProblemTally``), from which the metrics are computed at the end.

Samples are only as good as what they were verified against. verified.json records, per
problem, a hash of its rendered prompt and one of its gold answer, its metadata and the verifier
(settings and code). A resume compares them with the task and the verifier as they are now: a
problem whose gold or verifier changed has its samples re-verified (same completions, new
verdicts); a problem whose prompt changed, or that left the task, has samples of another
question, and the eval is refused, naming it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agpo.errors import UserError
from agpo.eval.samples import PROBLEMS, SAMPLES, append_rows, iter_rows, repair_tail
from agpo.eval.summary import ProblemTally, summarize, tally
from agpo.io import load_json, replace_text
from agpo.rollout import Engine, SamplingConfig, TransformersEngine
from agpo.tasks import write_items
from agpo.tasks.templates import render_prompt
from agpo.types import RewardResult, Rollout, TaskItem

VERIFIED = "verified.json"
TIMING = "timing.json"
# Reward settings that change how fast verdicts come, never which.
_SPEED_ONLY = ("workers", "cache_size")


@dataclass
class Timing:
    """Wall seconds spent sampling and waiting for verification (the benchmark's ratio)."""

    sample_s: float = 0.0
    verify_s: float = 0.0
    """Only the time the eval stood waiting for verdicts; verification that ran while the
    next batch sampled costs nothing here."""
    tokens: int = 0
    """Tokens sampled (a batch sampled again after a kill counts again: its time was spent)."""
    samples: int = 0
    """Rows written to samples.jsonl in the time counted."""

    def plus(self, other: Timing) -> Timing:
        pairs = zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)
        return Timing(*(a + b for a, b in pairs))


def read_timing(out_dir: Path) -> Timing:
    """An eval folder's timing.json: the time of every invocation that wrote its rows (a
    killed one counts up to its last written batch). Absent: none recorded."""
    path = out_dir / TIMING
    if not path.exists():
        return Timing()
    data = load_json(path)
    return Timing(**{f.name: data[f.name] for f in dataclasses.fields(Timing) if f.name in data})


def batches(num_items: int, n: int, batch_size: int) -> Iterator[tuple[int, range]]:
    """(batch index, unit range) over the grid; unit u is sample ``u % n`` of problem ``u // n``."""
    total = num_items * n
    for b, start in enumerate(range(0, total, batch_size)):
        yield b, range(start, min(start + batch_size, total))


def batch_generator(seed: int, batch: int, device: torch.device | str = "cpu") -> torch.Generator:
    # Distinct, reproducible streams per batch; the multiplier keeps (seed, batch) pairs apart.
    # On the model's device: the sampler draws its noise there.
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + batch)


def _rows(
    items: Sequence[TaskItem], n: int, units: Sequence[int], rollout: Rollout,
    verdicts: Sequence[RewardResult],
) -> list[dict[str, Any]]:
    lengths = rollout.response_mask.sum(-1)  # [N]
    nll = -(rollout.logprobs * rollout.response_mask).sum(-1) / lengths.clamp_min(1)  # [N]
    # One conversion per tensor: element-wise float()/int() on tensors costs more than sampling
    # a tiny model's token.
    lengths_l, nll_l, trunc_l = lengths.tolist(), nll.tolist(), rollout.truncated.tolist()
    return [
        {
            "problem_id": items[u // n].id,
            "sample": u % n,
            "completion": rollout.texts[j],
            "parsed": verdicts[j].parsed,
            "correct": verdicts[j].score >= 1.0,
            "score": verdicts[j].score,
            "failure": verdicts[j].failure,
            "length": lengths_l[j],
            "truncated": trunc_l[j],
            "nll": round(nll_l[j], 6),
        }
        for j, u in enumerate(units)
    ]


def evaluate_items(
    model: torch.nn.Module,
    tokenizer: Any,
    items: Sequence[TaskItem],
    n: int,
    sampling: SamplingConfig,
    reward_fn: Any,
    out_dir: Path | None = None,
    *,
    template: str = "plain",
    seed: int = 0,
    progress: bool = True,
    timing: Timing | None = None,
    engine: Engine | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, float | int]:
    """Sample ``n`` responses per item, verify them, return passk.json's metrics.

    ``reward_fn.batch(items, completions) -> list[RewardResult]`` (agpo.rewards); when it also
    has ``submit`` (``RewardFn``), a batch is verified while the next one samples. With
    ``out_dir`` every row is appended to ``out_dir/samples.jsonl`` as its batch finishes, rows
    already there are not sampled again (resume), and the metrics cover the whole file. Without
    it (periodic eval during training) rows are tallied in memory and dropped. ``engine``
    samples (default: the transformers engine on ``model``); a vLLM engine pushes ``model``'s
    weights first when they changed. With ``out_dir``, rows already there are first checked
    against the problems as they are now (the module docstring); ``say`` (default: stderr)
    gets the line that reports a re-verification.
    """
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    timing = timing if timing is not None else Timing()
    engine = engine if engine is not None else TransformersEngine(model, tokenizer)
    path = out_dir / SAMPLES if out_dir is not None else None
    prompts = [render_prompt(it, template, tokenizer) for it in items]
    golds = {it.id: it.gold for it in items}
    tallies: dict[str, ProblemTally] = {}
    done: set[tuple[str, int]] = set()
    if path is not None:
        done, tallies = _resume(out_dir, items, prompts,
                                lambda it: render_prompt(it, template, tokenizer), reward_fn,
                                say or _stderr)
    # The eval's time over every invocation that wrote rows, kept with them batch by batch.
    earlier = read_timing(out_dir) if path is not None and done else Timing()
    device = next(model.parameters()).device
    todo = [(b, units) for b, units in batches(len(items), n, sampling.batch_size)
            if any((items[u // n].id, u % n) not in done for u in units)]
    with _progress(progress) as bar:
        task = bar.add_task("eval", total=len(items) * n,
                            completed=len(items) * n - sum(len(u) for _, u in todo))

        def finish(batch: _Batch) -> None:
            rows = [r for r in batch.rows(items, n, timing) if (r["problem_id"], r["sample"])
                    not in done]
            timing.samples += len(rows)
            if path is not None:
                append_rows(path, rows)
                write_json(out_dir / TIMING, dataclasses.asdict(earlier.plus(timing)))
            tally(rows, into=tallies, golds=golds)

        # Batch b is verified (reward_fn.submit) while batch b+1 samples, then its rows are
        # written: the same rows in the same order as sample → verify → write, one batch later.
        pending: _Batch | None = None
        try:
            for b, units in todo:
                batch = _start_batch(engine, items, prompts, n, units, sampling,
                                     reward_fn, batch_generator(seed, b, device), timing)
                # The bar counts samples as they land, not as they are written (one batch
                # later, after the next batch has sampled while this one was verified).
                bar.advance(task, len(units))
                if pending is not None:
                    previous, pending = pending, None
                    finish(previous)
                pending = batch
        except BaseException:
            # ``pending`` is set only when starting the next batch failed (e.g. Ctrl-C while
            # sampling): the batch before it is sampled already, so it goes to disk as in a
            # serial loop and resume starts after it. Its own error must not hide the first.
            if pending is not None:
                with contextlib.suppress(Exception):
                    finish(pending)
            raise
        if pending is not None:
            finish(pending)
    return summarize(tallies)


def _resume(
    out_dir: Path, items: Sequence[TaskItem], prompts: Sequence[str],
    render: Callable[[TaskItem], str], reward_fn: Any, say: Callable[[str], None],
) -> tuple[set[tuple[str, int]], dict[str, ProblemTally]]:
    """Prepare ``out_dir`` for this eval's rows: the rows already there reconciled with the
    problems as they are now, problems.jsonl and verified.json written; returns the (problem,
    sample) pairs on disk and their tallies."""
    path = out_dir / SAMPLES
    out_dir.mkdir(parents=True, exist_ok=True)
    repair_tail(path)
    settings = verifier_settings(reward_fn)
    keys = problem_keys(items, prompts, settings)
    if path.exists():
        reconcile(out_dir, items, keys, reward_fn, render, say)
    write_items(list(items), out_dir / PROBLEMS)
    # Before any new row: a row on disk is always verified against what this file says.
    replace_text(out_dir / VERIFIED, json.dumps({"problems": keys}, indent=0) + "\n")
    done: set[tuple[str, int]] = set()
    tallies: dict[str, ProblemTally] = {}
    golds = {it.id: it.gold for it in items}
    if path.exists():
        # One read serves both resume (what to skip) and the metrics of earlier rows.
        for row in iter_rows(path):
            done.add((str(row["problem_id"]), int(row["sample"])))
            tally([row], into=tallies, golds=golds)
    return done, tallies


@dataclass
class _Batch:
    """A sampled batch whose verification is under way."""

    units: range
    rollout: Rollout
    verdicts: Future[list[RewardResult]]

    def rows(self, items: Sequence[TaskItem], n: int, timing: Timing) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        verdicts = self.verdicts.result()
        # Only the time the eval stands waiting: verification done during sampling is free.
        timing.verify_s += time.perf_counter() - t0
        return _rows(items, n, self.units, self.rollout, verdicts)


def _start_batch(
    engine: Engine, items: Sequence[TaskItem], prompts: Sequence[str],
    n: int, units: range, sampling: SamplingConfig, reward_fn: Any, generator: torch.Generator,
    timing: Timing,
) -> _Batch:
    batch_prompts = [prompts[u // n] for u in units]
    temps = torch.full((len(units),), sampling.temperature)
    t0 = time.perf_counter()
    rollout = engine.sample(batch_prompts, temps, sampling, generator)
    timing.sample_s += time.perf_counter() - t0
    timing.tokens += rollout.num_generated_tokens
    t1 = time.perf_counter()
    verdicts = _submit(reward_fn, [items[u // n] for u in units], rollout.texts)
    # Nothing when a helper thread verifies; all of it when verification runs right here
    # (workers=0, or a reward_fn without ``submit``): the eval waits either way.
    timing.verify_s += time.perf_counter() - t1
    return _Batch(units, rollout, verdicts)


def _submit(reward_fn: Any, items: list[TaskItem], texts: list[str]) -> Future[list[RewardResult]]:
    if hasattr(reward_fn, "submit"):  # agpo.rewards.RewardFn: verifies on its helper thread
        return reward_fn.submit(items, texts)
    done: Future[list[RewardResult]] = Future()  # any other ``batch`` object: verify now
    done.set_result(reward_fn.batch(items, texts))
    return done


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("samples"), TimeRemainingColumn(), disable=not enabled, transient=False,
    )


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON in one atomic write (``agpo.io.replace_text``): a reader never sees half a
    file. NaN and ±inf become null (strict JSON readers reject them)."""
    replace_text(path, json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _finite(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# --------------------------------------------------------------------------- what was verified


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def verifier_settings(reward_fn: Any) -> dict[str, Any]:
    """What decides a verdict besides the problem: the reward settings (``RewardFn.cfg`` less
    its speed knobs) and the verifier's code (``verifier_code``); {} for a reward function that
    does not say."""
    cfg = getattr(reward_fn, "cfg", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        return {}
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _SPEED_ONLY}
    return {**settings, "code": verifier_code()}


@functools.lru_cache(maxsize=1)
def verifier_code() -> str:
    """A hash of the code that grades: agpo's rewards package and the installed math-verify. A
    fix to the grader (one that stops crediting a restated expression) re-verifies the samples
    of a resumed eval instead of keeping the old verdicts beside new ones."""
    import agpo.rewards

    root = Path(agpo.rewards.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        h.update(importlib.metadata.version("math-verify").encode())
    except importlib.metadata.PackageNotFoundError:
        pass
    return h.hexdigest()[:16]


def problem_keys(
    items: Sequence[TaskItem], prompts: Sequence[str], verifier: Mapping[str, Any],
) -> dict[str, dict[str, str]]:
    """problem id → {"prompt": hash of the rendered prompt, "check": hash of the gold answer,
    the metadata (less its line number in the task file, which moves with unrelated edits)
    and the verifier settings}."""
    return {
        it.id: {"prompt": _digest(prompt),
                "check": _digest([it.gold, {k: v for k, v in it.meta.items() if k != "line"},
                                  verifier])}
        for it, prompt in zip(items, prompts, strict=True)
    }


def reconcile(
    out_dir: Path, items: Sequence[TaskItem], keys: Mapping[str, Mapping[str, str]],
    reward_fn: Any, render: Callable[[TaskItem], str], say: Callable[[str], None],
) -> None:
    """Bring the rows of ``out_dir``'s samples file in line with ``items`` before a resume:
    re-verify the samples of a problem whose check changed, refuse (naming them) problems whose
    prompt changed or that left the task. ``render`` shows a problem to the model (the prompts
    of an eval written before verified.json are re-rendered from its problems.jsonl)."""
    path = out_dir / SAMPLES
    recorded = _recorded(out_dir, render)
    ids: set[str] = {str(row["problem_id"]) for row in iter_rows(path)}
    gone = sorted(ids - keys.keys())
    moved = sorted(p for p in ids & keys.keys()
                   if p in recorded and recorded[p].get("prompt") != keys[p]["prompt"])
    if gone or moved:
        what = "; ".join(part for part in (
            gone and f"no longer in the task: {_names(gone)}",
            moved and f"with another prompt now: {_names(moved)}") if part)
        raise UserError(f"{path}: holds samples of problems {what}; those samples answer another "
                        "question: restore the task, or choose a new --out")
    stale = {p for p in ids if p not in recorded or recorded[p].get("check") != keys[p]["check"]}
    if not stale:
        return
    rows = list(iter_rows(path))
    redo = [i for i, row in enumerate(rows) if str(row["problem_id"]) in stale]
    if any(not isinstance(rows[i].get("completion"), str) for i in redo):
        raise UserError(f"{path}: rows of {_names(sorted(stale))} need re-verifying (their gold "
                        "answer or verifier changed) but carry no completion; choose a new --out")
    by_id = {it.id: it for it in items}
    verdicts = reward_fn.batch([by_id[str(rows[i]["problem_id"])] for i in redo],
                               [rows[i]["completion"] for i in redo])
    for i, v in zip(redo, verdicts, strict=True):
        rows[i] = {**rows[i], "parsed": v.parsed, "correct": v.score >= 1.0, "score": v.score,
                   "failure": v.failure}
    replace_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    say(f"{path}: re-verified {len(redo)} samples of {len(stale)} problem(s) whose gold answer or "
        f"verifier (settings or code) changed since they were verified: {_names(sorted(stale))}")


def _recorded(out_dir: Path, render: Callable[[TaskItem], str]) -> dict[str, dict[str, str]]:
    """What the samples on disk were verified against: verified.json; for an eval from before
    it, the prompts of the problems.jsonl it wrote and no check (its verifier is not known, so
    every row is re-verified); {} when neither is readable (every row is re-verified)."""
    try:
        data = json.loads((out_dir / VERIFIED).read_text(encoding="utf-8"))
        problems = data["problems"]
        if isinstance(problems, dict):
            return {str(k): v for k, v in problems.items() if isinstance(v, dict)}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if (out_dir / VERIFIED).exists():
        return {}  # damaged: trust nothing, re-verify every row
    try:
        old = [TaskItem(id=str(r["id"]), prompt=str(r["prompt"]), gold=str(r["gold"]),
                        meta=r.get("meta") or {})
               for r in map(json.loads, (out_dir / PROBLEMS).read_text(encoding="utf-8").splitlines())]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    return {it.id: {"prompt": _digest(render(it))} for it in old}


def _names(ids: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(ids[:most])
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
