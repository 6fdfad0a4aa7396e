"""Training throughput: agpo's trainer vs TRL's GRPOTrainer on the identical workload, and
agpo's step time against its floor. One invocation measures everything (ratios are what count).

Workload (DESIGN.md "Benchmarks"): a tiny Llama (hidden 128, 2 layers, 4 heads, 2 KV heads,
character vocabulary, random init), the same prompts and exact-match reward, B prompts × 8
samples, at most 32 new tokens (the same model and EOS: both decode until every row stopped,
about 32 steps for a random model), one update epoch, no reference model, 32 sequences per
forward/backward, the same number of steps. The first step of each is warm-up and not timed.
agpo's floor is its own sampling pass plus one forward/backward over the same tokens with the
same model.

The same math on both sides: fp32 and no activation checkpointing, as agpo trains by default.
TRL's own defaults differ on a CPU (bf16 autocast and gradient checkpointing, a recomputed
forward); --trl-defaults measures TRL with those instead.

    .venv/bin/python benchmarks/bench_train_vs_trl.py [--prompts 4 32] [--steps 6] [--threads 1] [--rounds 1] [--trl-defaults]

Fairness: the table prints the mean generated tokens per completion (EOS included) of each
trainer; they sample the same distribution from the same model, so they should agree to within
sampling noise. On a shared, noisy machine use --rounds 3 or more: each round runs the three
measurements in a rotated order, and the table gives the median over rounds.

Targets: agpo ≥ 2× TRL completions/s; agpo step ≤ 1.25× its floor. The "ceiling" column is TRL's
step over agpo's floor: the largest ratio any trainer that samples with agpo's sampler and then
runs one forward/backward could reach against this TRL measurement. "of it fwd/bwd" is the floor's
forward/backward alone: a step cannot take less whatever the sampler does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from agpo.rollout import SamplingConfig, sample, select  # noqa: E402
from agpo.rollout.engine import response_logprobs  # noqa: E402
from agpo.testbed.tiny import char_tokenizer, tiny_llama  # noqa: E402

G, NEW_TOKENS = 8, 32
MICRO = 32  # sequences per forward/backward in both trainers (faster on CPU than one of 256)


def build(workdir: Path, n_prompts: int) -> tuple[Path, Path]:
    """The shared model folder and a task file of n_prompts problems."""
    tok = char_tokenizer()
    model = tiny_llama(len(tok), hidden=128, layers=2, heads=4, kv_heads=2, seed=0)
    model_dir = workdir / "model"
    tok.save_pretrained(model_dir)
    model.save_pretrained(model_dir)
    task = workdir / "task.jsonl"
    with task.open("w") as f:
        for i in range(n_prompts):
            f.write(json.dumps({"id": f"p{i}", "prompt": f"{i * 37 % 1000}+{i * 11 % 100}=",
                                "gold": str(i * 37 % 1000 + i * 11 % 100)}) + "\n")
    return model_dir, task


def run_agpo(model_dir: Path, task: Path, b: int, steps: int, threads: int, out: Path) -> tuple[list[float], float]:
    """Timed step seconds and the mean generated tokens per completion (EOS included)."""
    from agpo.train.cli import main

    argv = [
        "--out", str(out), "--model.path", str(model_dir), "--task.spec", str(task),
        "--reward.verifier", "exact", "--reward.workers", "0",
        "--rollout.max-new-tokens", str(NEW_TOKENS), "--train.prompts-per-step", str(b),
        "--train.group-size", str(G), "--train.micro-batch-size", str(MICRO),
        "--train.steps", str(steps), "--train.checkpoint-every", "0", "--train.threads", str(threads),
        "--algo.advantage", "grpo", "--algo.kl-coef", "0", "--optim.lr", "1e-4",
        "--log.no-progress", "--log.samples-per-step", "0", "--log.no-post-update-stats",
    ]
    main(argv)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["perf/time_step"] for r in rows[1:]], statistics.mean(r["rollout/response_len"] for r in rows)


def run_floor(model_dir: Path, b: int, steps: int) -> tuple[list[float], list[float]]:
    """agpo's sampling pass + one forward/backward of the same tokens, nothing else: the timed
    steps' seconds, and the part of each spent in the forward/backward (and optimizer step)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    prompts = [f"{i * 37 % 1000}+{i * 11 % 100}=" for i in range(b) for _ in range(G)]
    cfg = SamplingConfig(max_new_tokens=NEW_TOKENS, batch_size=b * G)
    gen = torch.Generator().manual_seed(0)
    times, updates = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        r = sample(model, tok, prompts, torch.ones(b * G), cfg, gen)
        t1 = time.perf_counter()
        model.train()
        tokens = r.response_mask.sum()
        for i in range(0, b * G, MICRO):
            part = select(r, slice(i, i + MICRO))
            logprobs, _ = response_logprobs(model, part, part.temperatures, with_entropy=False)
            (-(logprobs * part.response_mask).sum() / tokens).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
        updates.append(time.perf_counter() - t1)
    return times[1:], updates[1:]


# TRL settings that make its update the same math as agpo's (fp32, no recomputed forward).
SAME_MATH = {"bf16": False, "gradient_checkpointing": False}


def run_trl(model_dir: Path, task: Path, b: int, steps: int, out: Path, settings: dict) -> tuple[list[float], float]:
    """Timed step seconds and the mean generated tokens per completion (EOS included);
    ``settings`` override GRPOConfig's defaults."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    rows = [json.loads(x) for x in task.read_text().splitlines()]
    data = Dataset.from_list([{"prompt": r["prompt"], "gold": r["gold"]} for r in rows])

    lengths: list[int] = []

    def exact(completions, gold, completion_ids, **_):  # noqa: ANN001, ANN202
        lengths.extend(len(ids) for ids in completion_ids)  # TRL's ids keep the EOS, like agpo's mask
        return [float(c.strip() == g) for c, g in zip(completions, gold, strict=True)]

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            stamps.append(time.perf_counter())

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = GRPOConfig(
        # One optimizer step per b·G completions, MICRO at a time: TRL generates all b·G at once
        # (steps_per_generation follows gradient_accumulation_steps) and accumulates.
        output_dir=str(out), per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=b * G // MICRO, num_generations=G,
        max_completion_length=NEW_TOKENS, max_steps=steps, num_iterations=1, beta=0.0,
        learning_rate=1e-4, logging_steps=1000, save_strategy="no", report_to=[], use_cpu=True,
        temperature=1.0, top_p=1.0, seed=0, dataloader_num_workers=0, disable_tqdm=True, **settings,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=exact, args=args, train_dataset=data,
                          processing_class=tok, callbacks=[Clock()])
    start = time.perf_counter()
    trainer.train()
    ends = [start, *stamps]
    return [ends[i + 1] - ends[i] for i in range(1, len(stamps))], statistics.mean(lengths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, nargs="+", default=[4, 32])
    ap.add_argument("--steps", type=int, default=6, help="steps per trainer (the first is warm-up)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="repeat, rotating the order; medians over rounds")
    ap.add_argument("--trl-defaults", action="store_true",
                    help="TRL with its own defaults (bf16 autocast, gradient checkpointing) instead of the same math")
    args = ap.parse_args()
    trl_settings = {} if args.trl_defaults else SAME_MATH
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, G {G}, "
          f"{NEW_TOKENS} new tokens, {args.steps - 1} timed steps (median), {args.rounds} round(s), "
          f"TRL {'defaults' if args.trl_defaults else 'same math (fp32, no checkpointing)'}")
    print(f"{'prompts×G':>10} {'agpo s/step':>12} {'TRL s/step':>11} {'agpo c/s':>9} {'TRL c/s':>8} "
          f"{'ratio':>6} {'floor s':>8} {'of it fwd/bwd':>13} {'agpo/floor':>10} {'ceiling':>8} {'tok/c agpo':>10} "
          f"{'tok/c TRL':>9}")
    for b in args.prompts:
        t: dict[str, list[float]] = {"agpo": [], "floor": [], "fwd/bwd": [], "trl": []}
        ratios, floors, ceilings, len_agpo, len_trl = [], [], [], [], []
        for rnd in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                model_dir, task = build(work, max(b, 8) * args.steps)
                jobs = {
                    "agpo": lambda: run_agpo(model_dir, task, b, args.steps, args.threads, work / "agpo"),  # noqa: B023
                    "floor": lambda: run_floor(model_dir, b, args.steps),  # noqa: B023
                    "trl": lambda: run_trl(model_dir, task, b, args.steps, work / "trl", trl_settings),  # noqa: B023
                }
                # Rotating the order spreads the machine's slow phases over all three.
                names = list(jobs)[rnd % 3:] + list(jobs)[: rnd % 3]
                got = {name: jobs[name]() for name in names}
            for name, (times, _) in got.items():
                t[name].append(statistics.median(times))
            t["fwd/bwd"].append(statistics.median(got["floor"][1]))
            len_agpo.append(got["agpo"][1])
            len_trl.append(got["trl"][1])
            ratios.append(t["trl"][-1] / t["agpo"][-1])
            floors.append(t["agpo"][-1] / t["floor"][-1])
            ceilings.append(t["trl"][-1] / t["floor"][-1])
        t_agpo, t_trl, t_floor, t_fb = (statistics.median(t[k]) for k in ("agpo", "trl", "floor", "fwd/bwd"))
        n = b * G
        print(f"{f'{b}×{G}':>10} {t_agpo:12.3f} {t_trl:11.3f} {n / t_agpo:9.1f} {n / t_trl:8.1f} "
              f"{statistics.median(ratios):6.2f} {t_floor:8.3f} {t_fb:13.3f} {statistics.median(floors):10.2f} "
              f"{statistics.median(ceilings):8.2f} "
              f"{statistics.mean(len_agpo):10.1f} {statistics.mean(len_trl):9.1f}")


if __name__ == "__main__":
    main()
