"""Per-step metrics: reduced once per step, written to metrics.jsonl (and TensorBoard), a few
shown on the progress bar; sampled prompts and completions go to samples/step_N.jsonl."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from agpo.algos.controllers import step_drift
from agpo.configs import to_dict
from agpo.io import dumps_finite, read_metrics, replace_text
from agpo.rewards.audit import credited_without_gold
from agpo.train.config import RunConfig
from agpo.train.dist import all_reduce
from agpo.rollout.sampler import SamplingProgress
from agpo.types import RewardResult, Rollout, TaskItem

if TYPE_CHECKING:  # sampling imports this module's Timer
    from agpo.train.sampling import Groups

# Shown on the progress bar, in this order (short label, key).
PROGRESS_KEYS = (
    ("reward", "reward/mean"),
    ("len", "rollout/response_len"),
    ("H", "rollout/entropy"),
    ("kl", "loss/approx_kl"),
    ("tok", "perf/tokens_total"),
)


class Timer:
    """Wall time split by phase (sampling / verify / update / ...), summed within one step.
    ``report``: told each phase's name as it begins (the progress bar's ``StepProgress.phase``)."""

    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.start = time.perf_counter()
        self.report = report

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        if self.report is not None:
            self.report(phase)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0

    def metrics(self) -> dict[str, float]:
        out = {f"perf/time_{k}": v for k, v in self.seconds.items()}
        out["perf/time_step"] = time.perf_counter() - self.start
        return out


class StepProgress:
    """The progress bar's info field while a step runs: the last step's metrics, the step's
    phase as the loop enters it, and how far sampling got (``SamplingProgress``, from the
    sampler) or the update (micro-batch m of M, where the update reports it). It only formats
    counters the run already has: showing them changes no number the run computes.

    ``show`` receives the text (the bar's ``info`` field)."""

    LABELS = {"sampling": "sampling", "verify": "verifying", "score": "scoring log-probs",
              "update": "update", "eval": "evaluating pass@k", "checkpoint": "saving the checkpoint"}

    def __init__(self, show: Callable[[str], None]) -> None:
        self.show = show
        self.last = ""  # progress_text of the last finished step
        self.step = 0
        self.now = ""

    def begin(self, step: int) -> None:
        """Step ``step`` (1-based) starts."""
        self.step = step
        self.phase("start")

    def phase(self, name: str) -> None:
        """A phase begins: a Timer phase (sampling, verify, score, update), eval or checkpoint."""
        self.now = self.LABELS.get(name, name)
        self._show()

    def sampling(self, p: SamplingProgress) -> None:
        self.now = f"sampling {p.rows_done}/{p.rows} rows · token {p.token}/{p.max_tokens}"
        self._show()

    def micro_batch(self, opt_step: int, opt_steps: int, micro: int, micros: int) -> None:
        """The update finished micro-batch ``micro`` of ``micros`` in optimizer step
        ``opt_step`` of ``opt_steps`` (epochs × mini-batches), all 1-based."""
        self.now = f"update {opt_step}/{opt_steps} · micro-batch {micro}/{micros}"
        self._show()

    def end(self, metrics: dict[str, float]) -> None:
        """The step finished: its metrics replace the phase."""
        self.last, self.now = progress_text(metrics), ""
        self._show()

    def _show(self) -> None:
        here = f"step {self.step}: {self.now}" if self.now else ""
        self.show(" │ ".join(part for part in (self.last, here) if part))


class MetricsLog:
    """metrics.jsonl (one row per step) and, when configured, TensorBoard events and a W&B run."""

    def __init__(self, run_dir: Path, cfg: RunConfig, resume_step: int | None = None) -> None:
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None:
            self._truncate(resume_step)
        self.tb = None
        if cfg.log.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # On resume, TensorBoard discards the events of steps after the checkpoint (they are
            # redone), as metrics.jsonl does above; otherwise the curves would fold back on themselves.
            purge = resume_step + 1 if resume_step is not None else None
            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)
        self.wandb = _wandb_run(run_dir, cfg) if cfg.log.wandb_project else None

    def _truncate(self, step: int) -> None:
        """Drop rows logged after the checkpoint we resume from (they will be redone), and a
        torn last line of a killed writer; rewritten atomically."""
        if not self.path.is_file():
            return
        keep = [row for row in read_metrics(self.path) if row["step"] <= step]
        replace_text(self.path, "".join(dumps_finite(row) + "\n" for row in keep))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        with self.path.open("a") as f:
            f.write(dumps_finite({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _wandb_run(run_dir: Path, cfg: RunConfig):  # noqa: ANN202 — a wandb Run
    """The run directory's W&B run: created on the first start, continued on every resume.

    Its id lives in the run directory. Steps redone after a resume reach W&B again; it keeps the
    first value of a step, and those equal the redone ones (a resumed run repeats the
    uninterrupted one exactly on the same machine).
    """
    import wandb

    id_file = run_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
    replace_text(id_file, run_id + "\n")
    return wandb.init(project=cfg.log.wandb_project, name=run_dir.name, id=run_id, resume="allow",
                      dir=str(run_dir), config=to_dict(cfg))


def group_metrics(scores: torch.Tensor, raw: torch.Tensor, usable: torch.Tensor,
                  world: int) -> dict[str, torch.Tensor]:
    """reward/ metrics as [sum, count] pairs (added across processes before dividing), over the
    usable groups; ``reward/bad_gold`` counts the groups left out (gold answer unusable).

    scores [B, G] (after shaping, what the advantages saw); raw [B, G] (the verifier's);
    usable [B] bool.
    """
    scores, raw = scores[usable], raw[usable]
    solved = (raw > 0).float().mean(-1)  # [B']
    one = lambda x: torch.stack([x.sum().float(), torch.tensor(float(x.numel()))])  # noqa: E731
    return {
        "reward/mean": one(raw),
        "reward/shaped_mean": one(scores),
        "reward/all_solved_frac": one((solved == 1).float()),
        "reward/none_solved_frac": one((solved == 0).float()),
        "reward/bad_gold": total((~usable).sum(), world),
    }


def audit_metrics(items: Sequence[TaskItem], texts: Sequence[str],
                  results: Sequence[RewardResult], g: int) -> dict[str, torch.Tensor]:
    """``reward/credited_without_gold`` as a [sum, count] pair: of the credited responses whose
    gold is a plain number, the share that never writes it (``agpo.rewards.audit``; a sign of
    a reward hack). items [B]; texts and results [B·G], each item's G responses together."""
    golds = [it.gold for it in items for _ in range(g)]
    unwritten, audited = credited_without_gold(golds, texts, [r.score for r in results])
    return {"reward/credited_without_gold": torch.tensor([float(unwritten), float(audited)])}


def total(x: torch.Tensor | float, world: int) -> torch.Tensor:
    """A per-process count as a [value, 1/world] pair: ``MetricSums.reduce`` then gives the sum
    over processes."""
    return torch.stack([torch.as_tensor(x).float().cpu(), torch.tensor(1.0 / world)])


# How each advantage statistic of agpo.algos.advantages combines over processes: a mean weighted
# by kept rows, rows or groups, a sum, or a maximum. A statistic not listed is taken as a mean
# over groups.
ADV_REDUCTION = {
    "mean": "kept", "frac_kept": "rows", "frac_all_equal": "groups",
    "pos_sum": "sum", "neg_sum": "sum", "abs_max": "max",
}


def advantage_metrics(
    stats: dict[str, torch.Tensor], keep: torch.Tensor, world: int,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """adv/ metrics: ([sum, count] pairs, maxima), so that every process's groups count.

    ``stats`` from the estimator over this process's groups (``{}`` when it had none; the keys
    of ADV_REDUCTION are then sent as zeros so that every process reduces the same keys);
    keep [B', G] of those groups.
    """
    b, g = keep.shape if keep.ndim == 2 else (0, 1)
    weight = {"kept": keep.sum().float(), "rows": torch.tensor(float(b * g)),
              "groups": torch.tensor(float(b))}
    pairs: dict[str, torch.Tensor] = {}
    peaks: dict[str, torch.Tensor] = {}
    for key in sorted(set(ADV_REDUCTION) | set(stats)):
        how = ADV_REDUCTION.get(key, "groups")
        value = stats.get(key, torch.zeros(())).detach().float().cpu()
        if how == "max":
            peaks[f"adv/{key}"] = value if key in stats else torch.tensor(-math.inf)
        elif how == "sum":
            pairs[f"adv/{key}"] = total(value, world)
        else:
            pairs[f"adv/{key}"] = torch.stack([value * weight[how], weight[how]])
    return pairs, peaks


def count_metrics(groups: Groups, clip_low: torch.Tensor, world: int) -> dict[str, torch.Tensor]:
    """Totals over processes: probe tokens, dynamic-sampling rounds, discarded and trained
    groups; and the mean clip ε over sequences ([N])."""
    return {
        "rollout/probe_tokens": total(groups.probe_tokens, world),
        "rollout/sampling_rounds": torch.stack([torch.tensor(float(groups.rounds)), torch.tensor(1.0)]),
        "rollout/discarded_groups": total(groups.discarded, world),
        "rollout/groups": total(groups.size, world),
        "ctrl/clip_eps": torch.stack([clip_low.float().sum().cpu(), torch.tensor(float(clip_low.numel()))]),
    }


def rollout_metrics(rollout: Rollout, entropy: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """rollout/ metrics as [sum, count] pairs: length, truncation, token entropy [N, T] and
    temperature (the engine/trainer gap is the update's mismatch/ metrics)."""
    mask = rollout.response_mask.float()
    lengths = mask.sum(-1)  # [N]
    n = lengths.new_tensor(float(lengths.numel()))
    out = {
        "rollout/response_len": torch.stack([lengths.sum(), n]),
        "rollout/truncated_frac": torch.stack([rollout.truncated.float().sum(), n]),
        "rollout/temperature": torch.stack([rollout.temperatures.float().sum(), n]),
    }
    if entropy is not None:
        out["rollout/entropy"] = torch.stack([(entropy * mask).sum(), mask.sum()])
    return {k: v.detach().cpu() for k, v in out.items()}


class MetricSums:
    """One RL step's metrics before the reduction across processes: [sum, count] pairs (a mean is
    Σ sum / Σ count over micro-batches and processes) and maxima. The loop, the update and the
    estimators all add to it; ``reduce`` is the step's one all-reduce of the pairs (and one of
    the maxima). Values stay on their device until then: no host sync before ``reduce``.

    ``main``: whether this is the main process; ``once`` counts only there a value that every
    process holds (so that it is neither summed ``world`` times nor divided by a float 1/world).
    """

    def __init__(self, main: bool = True) -> None:
        self.main = main
        self.pairs: dict[str, torch.Tensor] = {}  # key → [sum, count]
        self.peaks: dict[str, torch.Tensor] = {}  # key → 0-d maximum

    def __contains__(self, key: str) -> bool:
        return key in self.pairs or key in self.peaks

    def add(self, key: str, total: torch.Tensor | float, count: torch.Tensor | float = 1.0) -> None:
        """Add ``total`` to the key's sum and ``count`` to its count."""
        total = torch.as_tensor(total).detach().float()
        pair = torch.stack([total, torch.as_tensor(count, dtype=torch.float32, device=total.device)])
        self.add_pairs({key: pair})

    def mean(self, key: str, value: torch.Tensor, weight: torch.Tensor) -> None:
        """A mean ``value`` over ``weight`` items (e.g. a micro-batch's tokens)."""
        self.add(key, value.detach().float() * weight.float(), weight.float())

    def once(self, key: str, value: torch.Tensor | float, count: float = 1.0) -> None:
        """A value that is the same on every process (an optimizer step's LR or gradient norm)."""
        self.add(key, value if self.main else 0.0, count if self.main else 0.0)

    def peak(self, key: str, value: torch.Tensor) -> None:
        """A maximum; -inf means nothing was measured (left out unless another process has one)."""
        value, old = value.detach().float(), self.peaks.get(key)
        self.peaks[key] = value if old is None else torch.maximum(old, value.to(old.device))

    def add_pairs(self, pairs: dict[str, torch.Tensor]) -> None:
        for key, pair in pairs.items():
            old = self.pairs.get(key)
            self.pairs[key] = pair if old is None else old + pair.to(old.device)

    def add_peaks(self, peaks: dict[str, torch.Tensor]) -> None:
        for key, value in peaks.items():
            self.peak(key, value)

    def reduce(self, all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] = all_reduce,
               all_reduce_max: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
        """Means and maxima over every process (every process must hold the same keys). A mean
        over nothing (e.g. every group skipped) is not 0: it is left out, as is a -inf maximum."""
        all_reduce_max = all_reduce_max or (lambda x: all_reduce(x, dist.ReduceOp.MAX))
        out: dict[str, float] = {}
        keys = sorted(self.pairs)
        if keys:
            sums = all_reduce_sum(torch.stack([self.pairs[k].float().cpu() for k in keys]))  # [K, 2]
            out = {k: float(s / c) for k, (s, c) in zip(keys, sums.tolist(), strict=True) if c > 0}
        keys = sorted(self.peaks)
        if keys:
            values = all_reduce_max(torch.stack([self.peaks[k].float().cpu() for k in keys])).tolist()
            out.update({k: v for k, v in zip(keys, values, strict=True) if v != -math.inf})
        return out


def after_update(old_logprobs: torch.Tensor, logprobs: torch.Tensor, response_mask: torch.Tensor,
                 advantages: torch.Tensor, group_size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """What the update did to the batch, from π_old and π_θ after it ([N, T] each; advantages [N]).

    Returns the step drift (0-d, KL̄_step's input; ``step_drift``) and [sum, count] pairs:
    ctrl/step_drift, and AsymGRPO's loss/pos_logprob_delta, the increment of log π averaged over
    each positive-advantage response's tokens, then over those responses.
    """
    drift = step_drift(old_logprobs, logprobs, response_mask, group_size)
    pos = response_mask * (advantages > 0).unsqueeze(-1)  # [N, T]
    delta = ((logprobs - old_logprobs) * pos).sum(-1) / pos.sum(-1).clamp_min(1)  # [N]
    return drift, {
        "loss/pos_logprob_delta": torch.stack([delta.sum(), (pos.sum(-1) > 0).sum().float()]).cpu(),
        "ctrl/step_drift": torch.stack([drift.cpu(), torch.tensor(1.0)]),
    }


def write_samples(
    path: Path,
    items: Sequence[TaskItem],
    rollout: Rollout,
    results: Sequence[RewardResult],
    advantages: torch.Tensor,
    groups: int,
) -> None:
    """The first ``groups`` prompt groups of the step: prompt, completion, score, advantage
    (written atomically: a resumed run rewrites the file of a step it redoes)."""
    if groups <= 0:
        return
    g = rollout.num_sequences // len(items)
    adv = advantages.flatten().tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for row in range(min(groups, len(items)) * g):
        item, res = items[row // g], results[row]
        lines.append(dumps_finite({
            "id": item.id, "prompt": item.prompt, "gold": item.gold,
            "completion": rollout.texts[row], "score": res.score, "parsed": res.parsed,
            "failure": res.failure, "advantage": adv[row],
            "truncated": bool(rollout.truncated[row]),
        }) + "\n")
    replace_text(path, "".join(lines))


def progress_text(metrics: dict[str, float]) -> str:
    parts = [f"{label} {metrics[k]:.3g}" for label, k in PROGRESS_KEYS if k in metrics]
    return " · ".join(parts)
