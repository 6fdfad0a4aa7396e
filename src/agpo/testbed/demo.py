"""``agpo demo``: the embedded default — testbed base model, methods compared, report.

Builds (or loads from the cache) the testbed base model, trains each method from it under the
same generated-token budget, evaluates the base model and every trained model at n samples per
held-out problem, and writes a report: pass@k curves base vs each method, a pass@1 / pass@n table
with S@n (the niche that only the base model's rare strategy solves), token entropy and
all/none-solved curves. See agpo.testbed.tasks for why this task shows boundary shrinkage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import transformers
import tyro
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from agpo.algos.advantages import AdvantageConfig
from agpo.algos.config import AlgoConfig
from agpo.errors import UserError
from agpo.eval.passk import pass_at_k, report_ks
from agpo.testbed import tasks
from agpo.testbed.build import Recipe, build_base_model

if TYPE_CHECKING:  # the trainer is imported when training starts: `agpo demo --help` stays quick
    from agpo.train.config import RunConfig

TASK = "testbed_add"
TOKENS_PER_RESPONSE = 5  # marker + 3 digits + EOS: every testbed response has this length


@dataclass(frozen=True)
class Method:
    """One compared method: a label and its ``algo`` section (plus update epochs)."""

    label: str
    algo: AlgoConfig
    epochs: int = 1


def _methods() -> dict[str, Method]:
    adaptive = AlgoConfig(advantage="agpo_adaptive", adaptive_clip=True, adaptive_temperature=True)
    return {
        "grpo": Method("GRPO", AlgoConfig(advantage="grpo")),
        "w_reinforce": Method("W-REINFORCE", AlgoConfig(advantage="w_reinforce")),
        "asym_grpo": Method("AsymGRPO (0.9/0.4)", AlgoConfig(advantage="asym_grpo")),
        "agpo_asym": Method("AGPO-asymmetric", AlgoConfig(advantage="agpo_asym")),
        # METHODS §2: 4 update epochs per batch, so its clip controller acts; its probe groups
        # count toward the token budget, which leaves it fewer RL steps than the others.
        "agpo_adaptive": Method("AGPO-adaptive", adaptive, epochs=4),
        # The evidence run adds these.
        "dr_grpo": Method("Dr.GRPO", AlgoConfig(advantage="dr_grpo", aggregation="constant")),
        "rloo": Method("RLOO", AlgoConfig(advantage="rloo")),
        "psr": Method("PSR", AlgoConfig(advantage="psr")),
        "nsr": Method("NSR", AlgoConfig(advantage="nsr")),
        # Clip-higher changes the objective only where the ratio leaves 1, so it gets 4 epochs
        # (with one on-policy update the ratio is exactly 1 and ε_high would do nothing).
        "grpo_clip_higher": Method("GRPO+clip-higher", AlgoConfig(clip_high=0.28), epochs=4),
        "grpo_4_epochs": Method("GRPO, 4 epochs", AlgoConfig(), epochs=4),  # clip-higher's control
        # AsymGRPO's entropy claim, one channel at a time (β = 0.5 on both sides is GRPO).
        "asym_pos_only": Method("AsymGRPO β+ 0.9/β− 0.5", _asym(0.9, 0.5)),
        "asym_neg_only": Method("AsymGRPO β+ 0.5/β− 0.75", _asym(0.5, 0.75)),
    }


def _asym(beta_pos: float, beta_neg: float) -> AlgoConfig:
    adv = AdvantageConfig(beta_pos=beta_pos, beta_neg=beta_neg)
    return AlgoConfig(advantage="asym_grpo", adv=adv)


METHODS = _methods()
DEMO_METHODS = ("grpo", "w_reinforce", "asym_grpo", "agpo_asym", "agpo_adaptive")


def check_methods(methods: Sequence[str]) -> None:
    """The --methods check of ``agpo demo`` and ``agpo testbed evidence``: at least one name, and
    every name in METHODS (the error lists the valid ones)."""
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UserError(f"--methods {' '.join(bad)}: valid names are {', '.join(METHODS)}")


@dataclass(frozen=True)
class DemoConfig:
    """agpo demo: train the methods on the built-in testbed and compare them with the base."""

    out: Path = Path("agpo_demo")
    """Output folder (base eval, one run + eval per method, report.html, summary.md)."""
    methods: tuple[str, ...] = DEMO_METHODS
    """Methods to train (names: see agpo.testbed.demo.METHODS)."""
    steps: int = 300
    """RL steps of a method without probe groups; every method gets the same generated-token
    budget: steps × prompts-per-step × group-size × 5 tokens."""
    prompts_per_step: int = 32
    """B: prompts per RL step."""
    group_size: int = 8
    """G: responses per prompt."""
    lr: float = 3e-4
    """Adam learning rate of the RL runs (constant)."""
    n: int = 256
    """Samples per held-out problem in the evaluations (pass@k up to k = n)."""
    limit: int = 0
    """Evaluate on the first N of the 200 held-out problems (0: all)."""
    seed: int = 0
    """Seed of the RL runs and of the evaluation's sampling."""
    base_seed: int = 0
    """Seed of the base model's pretraining."""
    pretrain_steps: int = Recipe().steps
    """Pretraining steps of the base model (the recipe; cached by it)."""
    progress: bool = True
    """Show the progress display."""

    def __post_init__(self) -> None:
        check_methods(self.methods)
        if min(self.steps, self.prompts_per_step, self.n) < 1 or self.group_size < 2:
            raise UserError("--steps, --prompts-per-step, --n must be ≥ 1 and --group-size ≥ 2")
        if self.lr <= 0 or self.limit < 0:
            raise UserError("--lr must be > 0 and --limit ≥ 0")

    @property
    def token_budget(self) -> int:
        return self.steps * self.prompts_per_step * self.group_size * TOKENS_PER_RESPONSE


# --------------------------------------------------------------------------- stages


def run_config(base: Path, method: Method, cfg: DemoConfig) -> RunConfig:
    """The RunConfig of one method's RL run on the testbed (budget in tokens, not steps)."""
    from agpo.rewards.config import RewardConfig
    from agpo.rollout.config import SamplingConfig
    from agpo.train.config import (
        LogConfig, ModelConfig, OptimConfig, RunConfig, TaskConfig, TrainConfig,
    )

    return RunConfig(
        model=ModelConfig(path=str(base), device="cpu"),
        task=TaskConfig(spec=TASK),
        rollout=SamplingConfig(max_new_tokens=TOKENS_PER_RESPONSE, batch_size=1024),
        reward=RewardConfig(verifier="exact", workers=0),
        algo=method.algo,
        optim=OptimConfig(lr=cfg.lr, betas=(0.9, 0.99)),
        train=TrainConfig(
            # An upper bound: the token budget ends every run (probe tokens included).
            steps=3 * cfg.steps,
            token_budget=cfg.token_budget,
            prompts_per_step=cfg.prompts_per_step,
            group_size=cfg.group_size,
            epochs=method.epochs,
            micro_batch_size=cfg.prompts_per_step * cfg.group_size,
            seed=cfg.seed,
            checkpoint_every=0,
            keep_checkpoints=1,
            threads=1,
        ),
        log=LogConfig(progress=False, samples_per_step=1, post_update_stats=True),
    )


def train_method(base: Path, name: str, cfg: DemoConfig, out: Path) -> Path:
    """Train one method into ``out`` (reused when it already finished); the final checkpoint."""
    from agpo.train.loop import train

    if not _final_checkpoint(out):
        if out.exists():
            import shutil

            shutil.rmtree(out)  # an interrupted demo run restarts that method from scratch
        train(run_config(base, METHODS[name], cfg), out)
    ckpt = _final_checkpoint(out)
    assert ckpt is not None, f"training into {out} left no checkpoint"
    return ckpt


def _final_checkpoint(run_dir: Path) -> Path | None:
    steps = sorted((run_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name[5:]))
    return steps[-1] if steps and (steps[-1] / "config.json").exists() else None


def evaluate_model(model_dir: Path, out: Path, cfg: DemoConfig) -> dict:
    """pass@k of one model on the held-out problems at τ = 1 (resumes a partial eval)."""
    from agpo.eval import evaluate

    return evaluate(
        model_dir, TASK, cfg.n, out, temperature=1.0, top_p=1.0,
        max_new_tokens=TOKENS_PER_RESPONSE, batch_size=4096, workers=0, seed=cfg.seed,
        limit=cfg.limit or None, progress=False,
    )


@dataclass
class EvalSummary:
    """What the report needs from one eval: pass@k overall and on S, strategy B's share."""

    label: str
    n: int
    passk: dict[int, float]
    passk_s: dict[int, float]
    share_b: float
    mean_entropy: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


def problem_counts(eval_dir: Path) -> tuple[int, dict[str, int], float]:
    """(n, correct samples per problem id, share of samples using strategy B) of an eval."""
    correct: dict[str, int] = {}
    samples: dict[str, int] = {}
    b = total = 0
    with (eval_dir / "samples.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            pid = row["problem_id"]
            samples[pid] = samples.get(pid, 0) + 1
            correct[pid] = correct.get(pid, 0) + bool(row["correct"])
            b += tasks.strategy_of(row["completion"]) == "B"
            total += 1
    return min(samples.values()), correct, b / max(1, total)


def s_flags() -> dict[str, bool]:
    """Problem id → whether it is an S problem (units carry), for the held-out split."""
    return {it.id: bool(it.meta["is_s"]) for it in tasks.load_testbed_add("test")}


def summarize_eval(eval_dir: Path, label: str) -> EvalSummary:
    """pass@k over all problems and over the S problems, from samples.jsonl."""
    n, correct, share_b = problem_counts(eval_dir)
    is_s = s_flags()
    ks = report_ks(n)

    def curve(pids: Sequence[str]) -> dict[int, float]:
        return {k: sum(pass_at_k(n, correct[p], k) for p in pids) / max(1, len(pids)) for k in ks}

    passk = json.loads((eval_dir / "passk.json").read_text())
    return EvalSummary(
        label, n, curve(list(correct)), curve([p for p in correct if is_s[p]]), share_b,
        passk.get("mean_token_entropy"),
    )


# --------------------------------------------------------------------------- report


def write_summary(
    out: Path, base: EvalSummary, trained: Sequence[EvalSummary], notes: dict
) -> Path:
    """summary.md (the table) and summary.json (every number) in ``out``."""
    n = base.n
    ks = [k for k in (1, 4, 16) if k < n] + [n]
    head = "| model | " + " | ".join(f"pass@{k}" for k in ks) + f" | S@1 | S@{n} | share of B |\n"
    head += "|---" * (len(ks) + 4) + "|\n"
    rows = "".join(
        f"| {e.label} | " + " | ".join(f"{e.passk[k]:.3f}" for k in ks)
        + f" | {e.passk_s.get(1, 0.0):.3f} | {e.passk_s.get(n, 0.0):.3f} | {e.share_b:.4f} |\n"
        for e in (base, *trained)
    )
    lines = [
        "# agpo demo: the built-in testbed", "",
        f"Held-out problems: {notes['problems']} ({notes['s_problems']} S), n = {n} samples each "
        f"at temperature 1. Every method trained from the same base model under "
        f"{notes['token_budget']} generated tokens. S = problems with a units carry, solved only "
        "by the base model's rare strategy B.", "", head + rows,
        "", "Runs: " + ", ".join(f"{k}: {v}" for k, v in notes["runs"].items()),
        "", f"Wall time: {notes['wall_s']:.0f} s", "",
    ]
    (out / "summary.md").write_text("\n".join(lines))
    data = {"notes": notes, "evals": [e.__dict__ for e in (base, *trained)]}
    (out / "summary.json").write_text(json.dumps(data, indent=1) + "\n")
    return out / "summary.md"


def plot_curves(
    out: Path, base: EvalSummary, trained: Sequence[EvalSummary], runs: dict[str, Path]
) -> list[Path]:
    """passk.png (base vs each method, all problems and S) and training.png (entropy, solved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = ((axes[0], "passk", "all held-out problems"), (axes[1], "passk_s", "S problems"))
    for ax, attr, title in panels:
        for e in (base, *trained):
            curve = getattr(e, attr)
            style = dict(color="black", lw=2.5) if e is base else dict(lw=1.5)
            ax.plot(list(curve), list(curve.values()), marker="o", ms=3, label=e.label, **style)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="k", ylabel="pass@k", title=title, ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "passk.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    keys = (("rollout/entropy", "token entropy"), ("reward/all_solved_frac", "all solved"),
            ("reward/none_solved_frac", "none solved"))
    for ax, (key, title) in zip(axes, keys, strict=True):
        for label, run in runs.items():
            rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            xs = [r["perf/tokens_total"] / 1000 for r in rows if key in r]
            ax.plot(xs, _smooth([r[key] for r in rows if key in r]), label=label, lw=1.2)
        ax.set(xlabel="generated tokens (thousands)", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=110)
    plt.close(fig)
    return [out / "passk.png", out / "training.png"]


def _smooth(xs: list[float], w: int = 10) -> list[float]:
    windows = (xs[max(0, i - w + 1) : i + 1] for i in range(len(xs)))
    return [sum(win) / len(win) for win in windows]


# --------------------------------------------------------------------------- main


def run_demo(cfg: DemoConfig, console: Console | None = None) -> Path:
    """Everything ``agpo demo`` does; returns the summary.md path."""
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()  # one progress display, not one per save
    console = console or Console()
    start = time.perf_counter()
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    stages = 3 + 2 * len(cfg.methods)  # base, base eval, (train, eval) per method, report
    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, disable=not cfg.progress) as bar:
        overall = bar.add_task("demo", total=stages, info="")
        step = _stage(bar, overall)
        recipe = replace(Recipe(), steps=cfg.pretrain_steps)
        pre = bar.add_task("pretrain base", total=recipe.steps, info="")
        base = build_base_model(
            cfg.base_seed, recipe,
            progress=lambda s, loss: bar.update(pre, completed=s, info=f"loss {loss:.3f}"),
        )
        bar.update(pre, completed=recipe.steps, visible=False)
        step("base model ready")
        base_eval = _eval(step, base, out / "eval_base", cfg, "base")
        runs: dict[str, Path] = {}
        evals: list[EvalSummary] = []
        for name in cfg.methods:
            label = METHODS[name].label
            bar.update(overall, info=f"training {label}")
            ckpt = train_method(base, name, cfg, out / f"run_{name}")
            runs[label] = out / f"run_{name}"
            step(f"trained {label}")
            evals.append(_eval(step, ckpt, out / f"eval_{name}", cfg, label))
        from agpo.eval import build_report

        dirs = [out / "eval_base", *(out / f"eval_{m}" for m in cfg.methods), *runs.values()]
        build_report(dirs, out / "report.html")
        plot_curves(out, base_eval, evals, runs)
        notes = {
            "problems": cfg.limit or tasks.TEST_SIZE,
            "s_problems": sum(tasks.load_testbed_add("test", cfg.limit or None)[i].meta["is_s"]
                              for i in range(cfg.limit or tasks.TEST_SIZE)),
            "token_budget": cfg.token_budget,
            "runs": {k: _steps_taken(v) for k, v in runs.items()},
            "wall_s": time.perf_counter() - start,
            "config": {k: str(v) for k, v in cfg.__dict__.items()},
        }
        summary = write_summary(out, base_eval, evals, notes)
        step("report written")
    console.print(summary.read_text())
    console.print(f"report: {out / 'report.html'}; plots: {out / 'passk.png'}, "
                  f"{out / 'training.png'}")
    return summary


def _stage(bar: Progress, task: object) -> Callable[[str], None]:
    def advance(info: str) -> None:
        bar.update(task, advance=1, info=info)  # type: ignore[arg-type]

    return advance


def _eval(
    step: Callable[[str], None], model: Path, out: Path, cfg: DemoConfig, label: str
) -> EvalSummary:
    evaluate_model(model, out, cfg)
    summary = summarize_eval(out, label)
    step(f"{label}: pass@1 {summary.passk[1]:.3f}, pass@{summary.n} {summary.passk[summary.n]:.3f}")
    return summary


def _steps_taken(run: Path) -> str:
    rows = (run / "metrics.jsonl").read_text().splitlines()
    last = json.loads(rows[-1])
    return f"{len(rows)} steps / {int(last['perf/tokens_total'])} tokens"


def main(argv: list[str]) -> int:
    run_demo(tyro.cli(DemoConfig, args=argv, prog="agpo demo"))
    return 0
