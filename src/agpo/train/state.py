"""A run's state across steps: models, optimizer, controllers, data cursor, counters, and the
glue that saves, restores and logs it. train/loop.py holds the algorithm; this holds the rest."""

from __future__ import annotations

import contextlib
import random
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import distributed as torch_dist
from torch.optim.lr_scheduler import LRScheduler

from agpo.algos.mismatch import Correction, correct
from agpo.configs import flatten, to_dict
from agpo.errors import UserError
from agpo.io import DirLock, dumps_finite, replace_text, resolve_device, use_threads
from agpo.models.precision import Precision, autocast
from agpo.policy import token_logprobs
from agpo.rollout.sampler import prepare_tokenizer
from agpo.tasks import model_positions, prompt_room
from agpo.train import checkpoint as ckpt
from agpo.train import fsdp
from agpo.train.config import RunConfig, read_yaml, save_yaml
from agpo.train.control import Control
from agpo.train.dist import Dist, any_process, barrier, gather, init_distributed
from agpo.train.metrics import MetricsLog
from agpo.train.sampling import Sampler
from agpo.train.setup import (
    PromptStream, load_items, load_models, require_new_out, require_run_dir, training_precision, write_env,
)
from agpo.train.update import SkipCounter, UpdateSpec, lr_scheduler
from agpo.types import Rollout


@dataclass
class Run:
    cfg: RunConfig
    dir: Path
    dist: Dist
    device: torch.device
    policy: torch.nn.Module
    tokenizer: Any
    ref: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler  # its position is the count of optimizer steps, skipped ones included
    generator: torch.Generator
    stream: PromptStream
    reward: Any
    sampler: Sampler
    log: MetricsLog | None
    eval_items: list | None
    control: Control  # τ per prompt (the sampler asks it), ε per row (the loop asks it), their state
    skips: SkipCounter
    step: int = 0
    tokens_total: int = 0
    lock: DirLock | None = field(default=None, repr=False)
    precision: Precision = field(default_factory=lambda: Precision("fp32"))
    """The precision that runs (--model.dtype resolved once)."""
    sharded: bool = False
    """Policy (and reference) sharded with FSDP2 (--train.fsdp)."""

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, cfg: RunConfig | None, out: Path, resume: bool,
              flags: frozenset[str] = frozenset()) -> Run:
        """Check the run directory, build everything, restore the last checkpoint on resume.

        The main process holds the run directory's lock from the first read of a resumed run
        (or the creation of a new one) until ``close``. ``flags``: the fields set on the command
        line (``optim.lr``); on resume, config.yaml may differ from the checkpoint's config in
        those only.
        """
        if (cfg or RunConfig()).train.fsdp:
            fsdp.require_torchrun()  # before anything is read or written
        d = init_distributed()
        # The locks taken so far: a start that fails releases them at once, not when the
        # exception (whose traceback holds the frames) is collected.
        held = [DirLock(out, "--resume")] if resume and d.main else []
        try:
            return cls._start(cfg, out, resume, d, held, flags)
        except BaseException:
            for lock in held:
                lock.release()
            raise

    @classmethod
    def _start(cls, cfg: RunConfig | None, out: Path, resume: bool, d: Dist,
               held: list[DirLock], flags: frozenset[str]) -> Run:
        file_cfg = None
        if resume:
            require_run_dir(out)
            file_cfg = read_yaml(out / "config.yaml", complete=True)
            cfg = cfg or file_cfg
        assert cfg is not None
        _check_world(cfg, d)
        if d.main and not resume:
            require_new_out(out)
        # Data and models load before the run directory exists: bad input leaves nothing behind.
        if busy := use_threads(cfg.train.threads, "--train.threads"):
            _warner(d)(busy)
        torch.manual_seed(cfg.train.seed)
        device = resolve_device(cfg.model.device)
        items = load_items(cfg.task, cfg.task.split, cfg.task.limit)
        eval_items = (load_items(cfg.task, cfg.task.eval_split, cfg.task.eval_limit, eval_task=True)
                      if cfg.eval.every else None)
        precision = training_precision(cfg.model.dtype, device, d.main)
        policy, tokenizer, ref = load_models(cfg.model, cfg.algo.uses_reference, cfg.train.seed, device,
                                             precision, lr=cfg.optim.lr)
        prepare_tokenizer(tokenizer)
        positions = model_positions(policy)
        cap = {"cap": cfg.rollout.max_new_tokens, "flag": "--rollout.max-new-tokens",
               "option": "--rollout.max-new-tokens"}
        prompt_room(items, cfg.task.template, cfg.task.spec, tokenizer, positions, **cap)
        if eval_items:
            prompt_room(eval_items, cfg.task.template, cfg.task.eval_spec or cfg.task.spec, tokenizer,
                        positions, **cap)
        if cfg.train.fsdp:  # after loading, before the optimizer: AdamW state is then sharded too
            policy = fsdp.shard(policy, precision, sum_gradients=True)
            if ref is not None:
                ref = fsdp.shard(ref, precision)
        last = ckpt.newest_intact(out, _warner(d)) if resume else None
        if last is not None and file_cfg is not None:
            _check_against_checkpoint(out / "config.yaml", file_cfg, last, flags)
        if d.main:
            if not resume:
                out.mkdir(parents=True, exist_ok=True)
                held.append(DirLock(out, "--out"))
                require_new_out(out)  # a run that started meanwhile
            if file_cfg != cfg:  # on resume: with the flags given now
                save_yaml(cfg, out / "config.yaml")
        barrier(d)
        opt = cfg.optim
        optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=opt.lr,
                                      betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)
        # Each process samples its own prompts, so each has its own sampling stream.
        generator = torch.Generator(device=device).manual_seed(cfg.train.seed * 7919 + d.rank)
        stream = PromptStream(items, cfg.train.seed)
        from agpo.rewards import build_reward

        reward = build_reward(cfg.reward)
        control = Control.build(cfg)
        sampler = Sampler(cfg, policy, tokenizer, reward, generator, control.temperature, control.needs_probe,
                          _local_items(stream, cfg.train.prompts_per_step, d),
                          lambda flag: any_process(flag, d))
        if precision.mixed and cfg.rollout.engine == "vllm":
            # vLLM holds its own copy of the weights: under bf16-mixed it samples in bf16, the
            # precision the trainer's autocast forward computes in (master weights stay float32)
            sampler.engine.dtype = precision.compute_dtype
        scheduler = lr_scheduler(optimizer, opt, cfg.train.optimizer_steps)
        run = cls(cfg, out, d, device, policy, tokenizer, ref, optimizer, scheduler, generator, stream,
                  reward, sampler, None, eval_items, control, SkipCounter(cfg.train.max_skipped_steps),
                  lock=held[0] if held else None, precision=precision, sharded=cfg.train.fsdp)
        if last is not None:
            run._restore(last)  # without one, a resumed run starts over from step 0
        if d.main:
            run.log = MetricsLog(out, cfg, resume_step=run.step if resume else None)
            write_env(out, cfg, d, device, precision)
        return run

    def close(self) -> None:
        self.reward.close()
        if self.log is not None:
            self.log.close()
        if self.dist.world > 1 and torch_dist.is_initialized():
            torch_dist.barrier()  # no process may drop its connections while another still uses them
            torch_dist.destroy_process_group()
        if self.lock is not None:
            self.lock.release()

    # --- pieces the loop calls ---------------------------------------------------------------

    def update_spec(self) -> UpdateSpec:
        c = self.cfg
        return UpdateSpec(
            objective=c.algo.objective, aggregation=c.algo.aggregation,
            kl_estimator=c.algo.kl_estimator, kl_coef=c.algo.kl_coef,
            entropy_coef=c.algo.entropy_coef, max_len=c.rollout.max_new_tokens,
            epochs=c.train.epochs, mini_batches=c.train.mini_batches_per_epoch,
            micro_batch_size=c.train.micro_batch_size, group_size=c.train.group_size,
            grad_clip=c.optim.grad_clip, micro_batch_tokens=c.train.micro_batch_tokens,
            # Under FSDP the update runs the root module only: its hooks gather the weights.
            share_prompts=c.train.share_prompts and not self.sharded,
            autocast_bf16=self.precision.mixed and not self.sharded,  # FSDP2 casts by its own policy
            old_from_engine=c.train.old_logprobs == "engine",
        )

    @contextlib.contextmanager
    def inference(self, model: torch.nn.Module | None = None) -> Iterator[None]:
        """The context of a no-grad forward of ``model`` (default: the policy): sampling,
        scoring, evaluation. Under FSDP its weights whole on every process (``fsdp.gathered``;
        a collective: every process enters); with bf16-mixed, bfloat16 autocast."""
        model = model if model is not None else self.policy
        with (fsdp.gathered(model) if self.sharded else contextlib.nullcontext()), \
                autocast(Precision("fp32") if self.sharded else self.precision, self.device):
            yield

    def old_logprobs(self, rollout: Rollout, temps: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """π_old of the sampled tokens and its entropy [N, T] before the update: None, None
        when the update's first forward measures them (``RunConfig.old_logprobs_in_update``);
        the engine's sampling log-probs (no entropy) with --train.old-logprobs engine; else a
        trainer scoring pass."""
        if self.cfg.old_logprobs_in_update:
            return None, None
        if self.cfg.train.old_logprobs == "engine":
            return rollout.logprobs, None
        return self.logprobs(rollout, temps)

    @property
    def trainer_old_logprobs(self) -> bool:
        """Whether the update's returned π_old is the trainer's own (not the engine's)."""
        return self.cfg.train.old_logprobs == "trainer" or self.cfg.old_logprobs_in_update

    @property
    def logs_mismatch(self) -> bool:
        """Whether the step logs mismatch/ metrics: when the engine's log-probs are not the
        trainer's computation, or the run corrects or uses them."""
        return (not self.sampler.engine.exact_logprobs or self.cfg.algo.mismatch_correction
                or self.cfg.train.old_logprobs == "engine")

    def mismatch(self, trainer_logprobs: torch.Tensor, rollout: Rollout) -> Correction:
        """Importance weights and kept rows of --algo.mismatch for the trainer's π_old [N, T]
        against the engine's sampling log-probs (``rollout.logprobs``), with their stats."""
        return correct(trainer_logprobs, rollout.logprobs, rollout.response_mask, self.cfg.algo.mismatch)

    def precision_metrics(self) -> dict[str, float]:
        """perf/precision_bf16: 1 when the matmuls ran in bfloat16 (bf16-mixed or -pure), else 0."""
        return {"perf/precision_bf16": float(self.precision.compute_dtype == torch.bfloat16)}

    @property
    def opt_steps(self) -> int:
        """Optimizer steps so far, skipped ones included (the LR schedule's position)."""
        return self.scheduler.last_epoch

    def ref_logprobs(self, rollout: Rollout, temps: torch.Tensor) -> torch.Tensor | None:
        """π_ref of the sampled tokens [N, T]: a frozen copy, or (LoRA) the policy with its
        adapters disabled; None without a KL term."""
        if self.ref is None:
            return None
        if self.ref is self.policy:
            with self.policy.disable_adapter():
                return self.logprobs(rollout, temps)[0]
        return self.logprobs(rollout, temps, self.ref)[0]

    def logprobs(self, rollout: Rollout, temps: torch.Tensor,
                 model: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropy [N, T] of the sampled tokens under ``model`` (default: the
        policy), no gradient, micro-batched as the update is."""
        t, model = self.cfg.train, model if model is not None else self.policy
        with self.inference(model):
            return token_logprobs(model, rollout, temps, t.micro_batch_size, t.micro_batch_tokens,
                                  t.share_prompts)

    def gather(self, per_group: torch.Tensor) -> list[float]:
        """A per-prompt value [b] of every process, in global prompt order (rank order)."""
        return gather([float(v) for v in per_group.detach().cpu().flatten().tolist()], self.dist)

    def barrier(self) -> None:
        barrier(self.dist)

    # --- checkpoints -------------------------------------------------------------------------

    def save(self) -> None:
        """Checkpoint this step: the main process writes the temporary folder, every other
        process adds its sampling generator to it, then the main process checksums it and
        renames it into place (so a checkpoint under its final name is always complete)."""
        if self.dist.main:
            state = {
                "opt_steps": self.opt_steps,
                "tokens_total": self.tokens_total,
                "data": self.stream.state_dict(),
                "controllers": self.control.state_dict(),
                "skipped_in_a_row": self.skips.run,
                "world": self.dist.world,
                "fsdp": self.sharded,  # weights and optimizer by parameter name (fsdp.save_full)
            }
            ckpt.begin_checkpoint(self.dir, self.step, self.policy, self.tokenizer, self.optimizer,
                                  self.generator, state, to_dict(self.cfg), weights=not self.sharded)
        if self.sharded:  # every process gathers; process 0 writes into the temporary folder
            barrier(self.dist)
            fsdp.save_full(self.policy, self.optimizer, ckpt.tmp_dir(self.dir, self.step))
        if self.dist.world > 1:
            barrier(self.dist)
            if not self.dist.main:
                from safetensors.torch import save_file

                save_file({"sampling": self.generator.get_state()},
                          str(ckpt.rank_rng_file(ckpt.tmp_dir(self.dir, self.step), self.dist.rank)))
            barrier(self.dist)
        if self.dist.main:
            ckpt.commit_checkpoint(self.dir, self.step)
            self._prune()
        barrier(self.dist)

    @contextlib.contextmanager
    def checkpoint_on_stop(self) -> Iterator[None]:
        """Around a phase that leaves the weights alone (sampling): a stop inside it (Ctrl-C,
        SIGTERM) first checkpoints the step boundary it began at, then goes on stopping.

        The weights, optimizer and controllers are still those of step ``self.step``; what the
        phase advanced (the sampling and torch streams, Python's, the data cursor) is rewound to
        the phase's start, so the checkpoint equals the periodic one of this step and the
        resumed run repeats no finished step. Sampling is most of a step, so most stops land
        here. Not for a run of several processes (a stop reaches them at different points; they
        resume from the last periodic checkpoint), nor at step 0 (nothing to keep), nor when
        this step's checkpoint exists.
        """
        sampling, torch_rng = self.generator.get_state(), torch.get_rng_state()
        python_rng, cursor = random.getstate(), self.stream.state_dict()
        try:
            yield
        except KeyboardInterrupt:
            kept = ckpt.checkpoint_path(self.dir, self.step).is_dir()
            if self.dist.world == 1 and self.step > 0 and not kept:
                self.generator.set_state(sampling)
                torch.set_rng_state(torch_rng)
                random.setstate(python_rng)
                self.stream.load_state_dict(cursor)
                self.save()
                print(f"stopped while sampling step {self.step + 1}: checkpoint {self.step} written "
                      "(the weights were not yet changed); a resumed run continues from it",
                      file=sys.stderr)
            raise

    def _restore(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path, self.policy, self.optimizer, self.generator,
                                     weights=not self.sharded)
        world = int(state.get("world", self.dist.world))
        if self.sharded:
            if not state.get("fsdp"):
                raise UserError(f"{path}: written by a run without --train.fsdp; resume it without "
                                "--train.fsdp (its optimizer state is keyed for an unsharded model)")
            fsdp.load_full(self.policy, self.optimizer, path)  # any number of processes
        resharded = bool(state.get("fsdp")) and world != self.dist.world
        if resharded and self.dist.main:
            print(f"warning: {path}: written by {world} processes, resumed by {self.dist.world}: "
                  "weights, optimizer, data order and controllers continue; the sampling streams "
                  "of the processes the writing run did not have start fresh", file=sys.stderr)
        elif world != self.dist.world:
            raise UserError(f"{path}: written by a run of {world} processes; resume it with "
                            f"{world} (each process's sampling stream is in the checkpoint)")
        self.step, self.tokens_total = int(state["step"]), int(state["tokens_total"])
        self.scheduler = lr_scheduler(self.optimizer, self.cfg.optim, self.cfg.train.optimizer_steps,
                                      done=int(state["opt_steps"]))
        self.skips.run = int(state.get("skipped_in_a_row", 0))
        self.stream.load_state_dict(state["data"])
        self.control.load_state_dict(state["controllers"])
        if not self.dist.main:
            rank_rng = ckpt.rank_rng_file(path, self.dist.rank)
            if resharded and self.dist.rank >= world:
                return  # a process the writing run did not have: its fresh stream (warned above)
            if not rank_rng.is_file():
                raise UserError(f"{rank_rng}: missing; this process's sampling stream cannot be "
                                "restored (the checkpoint is incomplete)")
            from safetensors.torch import load_file

            self.generator.set_state(load_file(str(rank_rng))["sampling"])

    def _prune(self) -> None:
        """Keep the --train.keep-checkpoints newest checkpoints up to this step. Newer ones are
        left alone: after a fallback past a damaged checkpoint, they are redone and replaced."""
        keep = self.cfg.train.keep_checkpoints
        older = [p for s, p in ckpt.checkpoint_dirs(self.dir) if s <= self.step]
        for path in older[:-keep] if keep else []:
            shutil.rmtree(path, ignore_errors=True)

    def write_metrics(self, metrics: dict[str, float]) -> None:
        if self.log is not None:
            self.log.write(self.step, metrics)

    def write_eval(self, result: dict[str, Any]) -> None:
        if self.dist.main:
            out = self.dir / "eval" / f"step_{self.step}.json"
            out.parent.mkdir(exist_ok=True)
            replace_text(out, dumps_finite(result, indent=1))


def _local_items(stream: PromptStream, global_b: int, d: Dist):  # noqa: ANN202
    """This process's share of each global batch: rows [r·b, (r+1)·b) of the same global order."""
    b = global_b // d.world
    return lambda: stream.next(global_b)[d.rank * b : (d.rank + 1) * b]


def _check_world(cfg: RunConfig, d: Dist) -> None:
    if cfg.train.prompts_per_step % d.world:
        raise UserError(
            f"--train.prompts-per-step {cfg.train.prompts_per_step} must be divisible by the "
            f"number of processes ({d.world})"
        )


def _warner(d: Dist):  # noqa: ANN202
    return lambda msg: print(f"warning: {msg}", file=sys.stderr) if d.main else None


def _check_against_checkpoint(path: Path, file_cfg: RunConfig, last: Path, flags: frozenset[str]) -> None:
    """Refuse a config.yaml that disagrees with the config its checkpoint was trained with,
    unless a flag given now sets the field (a deliberate change, e.g. more steps)."""
    theirs = ckpt.load_run_config(last)
    if theirs is None:  # a checkpoint of an agpo that did not store its config
        return
    theirs, mine = flatten(theirs), flatten(to_dict(file_cfg))
    diff = [k for k in mine if mine[k] != theirs.get(k, mine[k]) and k not in flags]
    if diff:
        shown = ", ".join(f"{k} ({mine[k]!r} here, {theirs[k]!r} there)" for k in diff[:3])
        flags = " ".join(f"--{k.replace('_', '-')} {mine[k]}" for k in diff[:3])
        raise UserError(
            f"{path}: differs from {last / ckpt.RUN_CONFIG}, the config of the checkpoint it "
            f"resumes, in {shown}; restore config.yaml, or give the change as a flag ({flags})"
        )
