"""The evaluation runner: sample n per problem, verify, append every sample, summarise.

The (problem, sample) grid is cut into fixed batches of ``sampling.batch_size`` units in
problem-major order, and batch b is sampled with a generator seeded by (seed, b). A batch is
therefore the same whichever run samples it, which is what makes a resumed eval equal to an
uninterrupted one: a restart skips the batches already on disk, re-samples a half-written one and
appends only its missing rows. Batch b's verification runs while batch b+1 samples
(``RewardFn.submit``); its rows are written after that, still in batch order. Completions are
written and dropped batch by batch; what stays in memory per sample is its extracted answer,
verdict and token statistics (``ProblemTally``), from which the metrics are computed at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agpo.eval.samples import SAMPLES, append_rows, iter_rows, repair_tail
from agpo.eval.summary import ProblemTally, summarize, tally
from agpo.rollout import Engine, SamplingConfig, TransformersEngine
from agpo.tasks.templates import render_prompt
from agpo.types import RewardResult, Rollout, TaskItem


@dataclass
class Timing:
    """Wall seconds spent sampling and waiting for verification (the benchmark's ratio)."""

    sample_s: float = 0.0
    verify_s: float = 0.0
    """Only the time the eval stood waiting for verdicts; verification that ran while the
    next batch sampled costs nothing here."""
    tokens: int = 0


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
) -> dict[str, float | int]:
    """Sample ``n`` responses per item, verify them, return passk.json's metrics.

    ``reward_fn.batch(items, completions) -> list[RewardResult]`` (agpo.rewards); when it also
    has ``submit`` (``RewardFn``), a batch is verified while the next one samples. With
    ``out_dir`` every row is appended to ``out_dir/samples.jsonl`` as its batch finishes, rows
    already there are not sampled again (resume), and the metrics cover the whole file. Without
    it (periodic eval during training) rows are tallied in memory and dropped. ``engine``
    samples (default: the transformers engine on ``model``); a vLLM engine pushes ``model``'s
    weights first when they changed.
    """
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    timing = timing if timing is not None else Timing()
    engine = engine if engine is not None else TransformersEngine(model, tokenizer)
    path = out_dir / SAMPLES if out_dir is not None else None
    tallies: dict[str, ProblemTally] = {}
    done: set[tuple[str, int]] = set()
    if path is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        repair_tail(path)
        if path.exists():
            # One read serves both resume (what to skip) and the metrics of earlier rows.
            for row in iter_rows(path):
                done.add((str(row["problem_id"]), int(row["sample"])))
                tally([row], into=tallies)
    prompts = [render_prompt(it, template, tokenizer) for it in items]
    device = next(model.parameters()).device
    todo = [(b, units) for b, units in batches(len(items), n, sampling.batch_size)
            if any((items[u // n].id, u % n) not in done for u in units)]
    with _progress(progress) as bar:
        task = bar.add_task("eval", total=len(items) * n,
                            completed=len(items) * n - sum(len(u) for _, u in todo))

        def finish(batch: _Batch) -> None:
            rows = [r for r in batch.rows(items, n, timing) if (r["problem_id"], r["sample"])
                    not in done]
            if path is not None:
                append_rows(path, rows)
            tally(rows, into=tallies)
            bar.advance(task, len(batch.units))

        # Batch b is verified (reward_fn.submit) while batch b+1 samples, then its rows are
        # written: the same rows in the same order as sample → verify → write, one batch later.
        pending: _Batch | None = None
        try:
            for b, units in todo:
                batch = _start_batch(engine, items, prompts, n, units, sampling,
                                     reward_fn, batch_generator(seed, b, device), timing)
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
    """Write JSON atomically (temp file + rename): a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")
    tmp.replace(path)


def _jsonable(x: Any) -> Any:
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and math.isnan(x):
        return None
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")
