"""A run's state across steps: models, optimizer, controllers, data cursor, counters, and the
glue that saves, restores and logs it. train/loop.py holds the algorithm; this holds the rest."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from agpo.algos.controllers import ClipController, StepKLTracker, TemperatureController
from agpo.errors import UserError
from agpo.rollout.engine import prepare_tokenizer, score
from agpo.train import checkpoint as ckpt
from agpo.train.config import RunConfig, from_yaml, save_yaml
from agpo.train.metrics import MetricsLog
from agpo.train.sampling import Sampler
from agpo.train.setup import (
    Dist, PromptStream, all_reduce_sum, init_distributed, load_items, load_models, prepare_run_dir,
    resolve_device, write_env,
)
from agpo.train.update import UpdateSpec, lr_factor
from agpo.types import Rollout


@dataclass
class Run:
    cfg: RunConfig
    dir: Path
    d: Dist
    device: torch.device
    policy: torch.nn.Module
    tokenizer: Any
    ref: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    stream: PromptStream
    reward: Any
    sampler: Sampler
    log: MetricsLog | None
    eval_items: list | None
    temperature: TemperatureController
    clip: ClipController
    step_kl: StepKLTracker
    step: int = 0
    opt_steps: int = 0
    tokens_total: int = 0

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, cfg: RunConfig | None, out: Path, resume: bool) -> Run:
        """Check the run directory, build everything, restore the last checkpoint on resume."""
        d = init_distributed()
        if resume:
            prepare_run_dir(out, resume=True)
            cfg = cfg or from_yaml(out / "config.yaml")
        assert cfg is not None
        _check_world(cfg, d)
        if d.main and not resume and out.exists() and any(out.iterdir()):
            prepare_run_dir(out, resume=False)  # raises: refuses a non-empty directory
        # Data and models load before the run directory exists: bad input leaves nothing behind.
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        device = resolve_device(cfg.model.device)
        items = load_items(cfg.task, cfg.task.split, cfg.task.limit)
        eval_items = (load_items(cfg.task, cfg.task.eval_split, cfg.task.eval_limit, eval_task=True)
                      if cfg.eval.every else None)
        policy, tokenizer, ref = load_models(cfg.model, cfg.algo.uses_reference, cfg.train.seed, device)
        prepare_tokenizer(tokenizer)
        if d.main:
            prepare_run_dir(out, resume=resume)
            save_yaml(cfg, out / "config.yaml")  # on resume: with the flags given now
        _barrier(d)
        opt = cfg.optim
        optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=opt.lr,
                                      betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)
        # Each process samples its own prompts, so each has its own sampling stream.
        generator = torch.Generator(device=device).manual_seed(cfg.train.seed * 7919 + d.rank)
        stream = PromptStream(items, cfg.train.seed)
        from agpo.rewards import build_reward

        reward = build_reward(cfg.reward)
        temperature = TemperatureController.from_config(cfg.algo.adaptive)
        sampler = Sampler(cfg, policy, tokenizer, reward, generator, temperature,
                          _local_items(stream, cfg.train.prompts_per_step, d), _any_process(d))
        run = cls(cfg, out, d, device, policy, tokenizer, ref, optimizer, generator, stream, reward,
                  sampler, None, eval_items, temperature, ClipController.from_config(cfg.algo.adaptive),
                  StepKLTracker.from_config(cfg.algo.adaptive))
        last = ckpt.latest_checkpoint(out) if resume else None
        if last is not None:
            run._restore(last)  # without one, a resumed run starts over from step 0
        if d.main:
            run.log = MetricsLog(out, cfg, resume_step=run.step if resume else None)
            write_env(out, cfg, d, device)
        return run

    def close(self) -> None:
        self.reward.close()
        if self.log is not None:
            self.log.close()
        if self.d.world > 1 and dist.is_initialized():
            dist.barrier()  # no process may drop its connections while another still uses them
            dist.destroy_process_group()

    def finished(self) -> bool:
        budget = self.cfg.train.token_budget
        return self.step >= self.cfg.train.steps or (budget > 0 and self.tokens_total >= budget)

    # --- pieces the loop calls ---------------------------------------------------------------

    def update_spec(self) -> UpdateSpec:
        c = self.cfg
        return UpdateSpec(
            objective=c.algo.objective, aggregation=c.algo.aggregation,
            kl_estimator=c.algo.kl_estimator, kl_coef=c.algo.kl_coef,
            entropy_coef=c.algo.entropy_coef, max_len=c.rollout.max_new_tokens,
            epochs=c.train.epochs, mini_batches=c.train.mini_batches_per_epoch,
            micro_batch_size=c.train.micro_batch_size, group_size=c.train.group_size,
            grad_clip=c.optim.grad_clip, log_entropy=c.reuse_sampling_logprobs,
            micro_batch_tokens=c.train.micro_batch_tokens,
        )

    def next_lr(self) -> float:
        """The LR of the next optimizer step (advances the schedule)."""
        lr = self.cfg.optim.lr * lr_factor(self.opt_steps, self.cfg.optim, self.cfg.train.optimizer_steps)
        self.opt_steps += 1
        return lr

    def ref_logprobs(self, rollout: Rollout, temps: torch.Tensor) -> torch.Tensor | None:
        """π_ref of the sampled tokens [N, T]: a frozen copy, or (LoRA) the policy with its
        adapters disabled; None without a KL term."""
        if self.ref is None:
            return None
        if self.ref is self.policy:
            with self.policy.disable_adapter():
                return self.score(rollout, temps)[0]
        return self.score(rollout, temps, self.ref)[0]

    def score(self, rollout: Rollout, temps: torch.Tensor,
              model: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropy [N, T] under ``model`` (default: the policy), micro-batched as
        the update is."""
        t = self.cfg.train
        return score(model if model is not None else self.policy, rollout, temps,
                     t.micro_batch_size, t.micro_batch_tokens)

    def gather(self, per_group: torch.Tensor) -> list[float]:
        """A per-prompt value [b] of every process, in global prompt order (rank order)."""
        values = [float(v) for v in per_group.detach().cpu().flatten().tolist()]
        if self.d.world == 1:
            return values
        parts: list[list[float]] = [[] for _ in range(self.d.world)]
        dist.all_gather_object(parts, values)
        return [v for part in parts for v in part]

    def barrier(self) -> None:
        _barrier(self.d)

    def controllers(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "clip": self.clip, "step_kl": self.step_kl}

    # --- checkpoints -------------------------------------------------------------------------

    def save(self) -> None:
        if self.d.main:
            state = {
                "opt_steps": self.opt_steps,
                "tokens_total": self.tokens_total,
                "data": self.stream.state_dict(),
                "controllers": {k: c.state_dict() for k, c in self.controllers().items()},
                "scheduler": {"opt_steps": self.opt_steps, "schedule": self.cfg.optim.schedule},
            }
            ckpt.save_checkpoint(self.dir, self.step, self.policy, self.tokenizer, self.optimizer,
                                 self.generator, state)
            self._prune()
        # Other processes' sampling streams differ: each saves its own generator state.
        if self.d.world > 1:
            rng_dir = self.dir / "checkpoints" / f"step_{self.step}"
            _barrier(self.d)
            from safetensors.torch import save_file

            save_file({"sampling": self.generator.get_state()}, str(rng_dir / f"rng_rank{self.d.rank}.safetensors"))
            _barrier(self.d)

    def _restore(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path, self.policy, self.optimizer, self.generator)
        self.step, self.opt_steps = int(state["step"]), int(state["opt_steps"])
        self.tokens_total = int(state["tokens_total"])
        self.stream.load_state_dict(state["data"])
        for k, c in self.controllers().items():
            c.load_state_dict(state["controllers"][k])
        rank_rng = path / f"rng_rank{self.d.rank}.safetensors"
        if rank_rng.is_file():
            from safetensors.torch import load_file

            self.generator.set_state(load_file(str(rank_rng))["sampling"])

    def _prune(self) -> None:
        keep = self.cfg.train.keep_checkpoints
        root = self.dir / "checkpoints"
        steps = sorted(int(p.name[5:]) for p in root.glob("step_*") if p.name[5:].isdigit())
        for s in steps[:-keep] if keep else []:
            shutil.rmtree(root / f"step_{s}", ignore_errors=True)

    def write_metrics(self, metrics: dict[str, float]) -> None:
        if self.log is not None:
            self.log.write(self.step, metrics)

    def write_eval(self, result: dict[str, Any]) -> None:
        if self.d.main:
            out = self.dir / "eval" / f"step_{self.step}.json"
            out.parent.mkdir(exist_ok=True)
            out.write_text(json.dumps(result, indent=1))


def _local_items(stream: PromptStream, global_b: int, d: Dist):  # noqa: ANN202
    """This process's share of each global batch: rows [r·b, (r+1)·b) of the same global order."""
    b = global_b // d.world
    return lambda: stream.next(global_b)[d.rank * b : (d.rank + 1) * b]


def _any_process(d: Dist):  # noqa: ANN202
    """flag → True when it is True on some process (one tiny all-reduce)."""
    return lambda flag: bool(all_reduce_sum(torch.tensor([float(flag)]), d).item() > 0)


def _check_world(cfg: RunConfig, d: Dist) -> None:
    if cfg.train.prompts_per_step % d.world:
        raise UserError(
            f"--train.prompts-per-step {cfg.train.prompts_per_step} must be divisible by the "
            f"number of processes ({d.world})"
        )


def _barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()
