"""Training throughput: agpo's trainer vs TRL's GRPOTrainer on the identical workload, and
agpo's step time against its floor. One invocation measures everything (ratios are what count),
each measurement in a fresh process.

Real workload (--model smollm2-135m-instruct --prompts 8, the target): SmolLM2-135M-Instruct,
8 chat-template word problems × 8 samples, at most 128 new tokens, math-verify reward, one update
epoch, no reference model, fp32, 16 sequences per forward/backward, the same steps for both.
--engine transformers vllm measures agpo with each rollout engine (vllm needs .venv-vllm, which
also holds TRL: run the benchmark with .venv-vllm/bin/python) and reports the faster as agpo's.
With --json the last line is one JSON object: speedup (TRL s/step ÷ agpo s/step),
agpo_over_floor, and the fairness columns (tokens generated, optimizer steps) per workload.

Tiny workload (the default): a tiny Llama (hidden 128, 2 layers, 4 heads, 2 KV heads,
character vocabulary, random init), the same prompts and exact-match reward, B prompts × 8
samples, at most 32 new tokens (the same model and EOS: both decode until every row stopped,
about 32 steps for a random model), one update epoch, no reference model, 32 sequences per
forward/backward, the same number of steps. The first step of each is warm-up and not timed.
Two yardsticks for agpo's step:
- the reference pass ("ref"): agpo's own sampling pass plus one forward/backward over the same
  tokens with the same model (agpo's response_logprobs on consecutive rows, so a group's prompt
  runs once per micro-batch where the update runs it once per optimizer step); with the vLLM
  engine the sampling pass includes pushing the updated weights into it. A faster sampler or
  forward would undercut it, so it says how close agpo is to its own parts, not to the machine.
- the compute floor ("floor"): the step's FLOPs at the matmul throughput measured on this machine
  in the run's precision. FLOPs: the update ≈ 6 × P × (each group's prompt once + every generated
  token) and sampling ≈ 2 × P × generated tokens, P the parameters that take part in matmuls
  (all but an untied input embedding; a tied one is the LM head). Throughput: the fastest of
  GEMMs of the model's own shapes (tokens × hidden by hidden × hidden / intermediate) in the
  precision's compute dtype, in a fresh process with the benchmark's threads. Attention scores,
  norms, the optimizer and every non-matmul op are left out, so no trainer on this machine can
  run the step in less: agpo_over_floor is its distance from the hardware.

Precision (--precision fp32 bf16-mixed): each is a column of its own. agpo trains with
--model.dtype PRECISION; TRL's GRPOTrainer with bf16=True for bf16-mixed (its CPU default:
accelerate's bfloat16 autocast, float32 weights) and bf16=False for fp32; the reference pass runs
under the same autocast. A CPU without bfloat16 instructions (no avx512_bf16 / amx_bf16) emulates
bfloat16 matmuls, several times slower than float32: the measured GEMM throughput shows it.

Apart from the precision, the same math on both sides: no activation checkpointing, as agpo
trains by default. TRL's own defaults also recompute the forward (gradient checkpointing);
--trl-defaults measures TRL with those instead.

    .venv/bin/python benchmarks/bench_train_vs_trl.py [--prompts 4 32] [--steps 6] [--threads 1] [--rounds 1] \
        [--precision fp32 bf16-mixed] [--trl-defaults]
    .venv-vllm/bin/python benchmarks/bench_train_vs_trl.py --model smollm2-135m-instruct --prompts 8 \
        --steps 3 --threads 2 --engine transformers vllm --json

Fairness: the table prints the mean generated tokens per completion (EOS included) of each
trainer; they sample the same distribution from the same model, so they should agree to within
sampling noise. On a shared, noisy machine use --rounds 3 or more: each round runs the three
measurements in a rotated order, and the table gives the median over rounds.

Targets: agpo ≥ 2× TRL completions/s; agpo step ≤ 1.25× its reference pass. The "ceiling"
column is TRL's step over the reference pass: the largest ratio any trainer that samples with
agpo's sampler and then runs one forward/backward could reach against this TRL measurement.
"of it fwd/bwd" is the reference pass's forward/backward alone. The output names the CPU (lscpu's
model name) and the measured matmul throughput of each precision.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import random
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from agpo.models.precision import Precision, autocast  # noqa: E402
from agpo.rollout import SamplingConfig, build_engine  # noqa: E402
from agpo.policy import response_logprobs  # noqa: E402
from agpo.models.tiny import char_tokenizer, tiny_llama  # noqa: E402

G = 8
TINY = "tiny"
PRECISIONS = ("fp32", "bf16-mixed")


@dataclass(frozen=True)
class Workload:
    model: str
    new_tokens: int
    micro: int  # sequences per forward/backward in both trainers
    verifier: str
    lr: float
    kv_cache_gb: int = 1  # vLLM's KV cache: 8 × 8 × (prompt + 128) tokens fit in 1 GiB at 135M


WORKLOADS = {
    # 32 per forward/backward: faster on CPU than one of 256
    TINY: Workload(TINY, new_tokens=32, micro=32, verifier="exact", lr=1e-4),
    # 16 × (≈ 90 prompt + 128) positions × 49152 fp32 logits ≈ 0.7 GB per micro-batch
    "smollm2-135m-instruct": Workload("smollm2-135m-instruct", new_tokens=128, micro=16, verifier="math",
                                      lr=1e-6),
}


def build(workdir: Path, n_prompts: int, wl: Workload) -> tuple[Path, Path]:
    """The shared model folder and a task file of n_prompts problems."""
    if wl.model != TINY:
        return build_real(workdir, n_prompts, wl.model)
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


NAMES = ["Ava", "Ben", "Chloe", "Dev", "Emma", "Femi", "Grace", "Hugo"]
THINGS = ["apples", "stickers", "marbles", "books", "coins", "shells", "pencils", "cards"]


def word_problem(i: int) -> tuple[str, int]:
    """A two-step arithmetic word problem (GSM8K style) and its answer, deterministic in i."""
    rng = random.Random(i)
    name, thing = NAMES[i % len(NAMES)], THINGS[rng.randrange(len(THINGS))]
    a, b, c = rng.randint(10, 60), rng.randint(2, 30), rng.randint(2, 9)
    text = (f"{name} has {a} {thing}. {name} buys {b} more, then gives {c} to a friend. "
            f"How many {thing} does {name} have now? Give the final answer as a number.")
    return text, a + b - c


def build_real(workdir: Path, n_prompts: int, name: str) -> tuple[Path, Path]:
    """The built-in model's folder and word problems rendered with its chat template once here,
    so that both trainers see the very same prompt string (agpo with --task.template plain)."""
    from agpo.models import load_tokenizer, resolve
    from agpo.tasks.templates import render_prompt
    from agpo.types import TaskItem

    model_dir = resolve(name)
    tok = load_tokenizer(name)
    task = workdir / "task.jsonl"
    with task.open("w") as f:
        for i in range(n_prompts):
            text, answer = word_problem(i)
            prompt = render_prompt(TaskItem(f"p{i}", text, str(answer)), "chat", tok)
            f.write(json.dumps({"id": f"p{i}", "prompt": prompt, "gold": str(answer)}) + "\n")
    return model_dir, task


@dataclass
class Measured:
    times: list[float]  # seconds of each timed step (the first step is warm-up, not timed)
    tokens_per_completion: float  # mean generated tokens per completion (EOS included)
    tokens: int = 0  # generated tokens over all steps
    opt_steps: int = 0
    update_times: list[float] | None = None  # the reference pass: its forward/backward part
    phases: dict[str, float] | None = None  # agpo: mean seconds per phase over the timed steps
    step_tokens: list[int] | None = None  # agpo: generated tokens of each timed step


def run_agpo(model_dir: Path, task: Path, b: int, steps: int, threads: int, out: Path,
             wl: Workload, engine: str, precision: str) -> Measured:
    from agpo.train.cli import main

    argv = [
        "--out", str(out), "--model.path", str(model_dir), "--task.spec", str(task),
        "--task.template", "plain", "--reward.verifier", wl.verifier, "--reward.workers", "0",
        "--rollout.max-new-tokens", str(wl.new_tokens), "--train.prompts-per-step", str(b),
        "--train.group-size", str(G), "--train.micro-batch-size", str(wl.micro),
        "--train.steps", str(steps), "--train.checkpoint-every", "0", "--train.threads", str(threads),
        "--algo.advantage", "grpo", "--algo.kl-coef", "0", "--optim.lr", str(wl.lr),
        "--log.no-progress", "--log.samples-per-step", "0", "--log.no-post-update-stats",
        "--rollout.engine", engine, "--rollout.vllm-kv-cache-gb", str(wl.kv_cache_gb),
        "--model.dtype", precision,
    ]
    main(argv)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    state = json.loads(next((out / "checkpoints").glob("step_*/trainer_state.json")).read_text())
    phases = {k.removeprefix("perf/time_"): statistics.mean(r.get(k, 0.0) for r in rows[1:])
              for k in rows[-1] if k.startswith("perf/time_") and k != "perf/time_step"}
    return Measured([r["perf/time_step"] for r in rows[1:]],
                    statistics.mean(r["rollout/response_len"] for r in rows),
                    int(sum(r["perf/tokens_step"] for r in rows)), int(state["opt_steps"]),
                    phases=phases, step_tokens=[int(r["perf/tokens_step"]) for r in rows[1:]])


def run_reference(model_dir: Path, task: Path, b: int, steps: int, wl: Workload, engine: str,
                  precision: str) -> Measured:
    """agpo's sampling pass + one forward/backward of the same tokens, nothing else, under
    ``precision``'s autocast: the timed steps' seconds, and the part of each spent in the
    forward/backward (and optimizer step)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=wl.lr)
    texts = [json.loads(x)["prompt"] for x in task.read_text().splitlines()]
    cfg = SamplingConfig(max_new_tokens=wl.new_tokens, batch_size=max(b * G, 1),
                         engine=engine, vllm_kv_cache_gb=wl.kv_cache_gb)
    sampler = build_engine(engine, model, tok, cfg)
    gen = torch.Generator().manual_seed(0)
    policy = Precision(precision)  # type: ignore[arg-type]
    times, updates, lengths = [], [], []
    for step in range(steps):
        prompts = [p for p in texts[step * b:(step + 1) * b] for _ in range(G)]
        t0 = time.perf_counter()
        with autocast(policy, "cpu"):
            r = sampler.sample(prompts, torch.ones(b * G), cfg, gen)
        t1 = time.perf_counter()
        model.train()
        tokens = r.response_mask.sum()
        lengths.append(float(tokens) / (b * G))
        for i in range(0, b * G, wl.micro):
            part = r.select(slice(i, i + wl.micro))
            with autocast(policy, "cpu"):
                logprobs, _ = response_logprobs(model, part, part.temperatures, with_entropy=False)
            (-(logprobs * part.response_mask).sum() / tokens).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
        updates.append(time.perf_counter() - t1)
    sampler.close()
    return Measured(times[1:], statistics.mean(lengths), update_times=updates[1:])


def trl_settings(precision: str, trl_defaults: bool) -> dict:
    """GRPOConfig overrides: TRL in ``precision`` (bf16=True is accelerate's bfloat16 autocast
    over float32 weights: bf16-mixed), and without its recomputed forward unless its defaults
    are asked for (gradient checkpointing on)."""
    settings: dict = {"bf16": precision == "bf16-mixed"}
    if not trl_defaults:
        settings["gradient_checkpointing"] = False
    return settings


# --- the compute floor ------------------------------------------------------------------------


def matmul_params(model_dir: Path) -> int:
    """Parameters that take part in a matmul per token: all but the input embedding (a table
    look-up), which counts once more as the LM head when tied (its logits are a matmul)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    return total if tied else total - model.get_input_embeddings().weight.numel()


def gemm_flops(model_dir: Path, precision: str, rows: int = 256, repeats: int = 3) -> float:
    """The matmul throughput (FLOP/s) this machine reaches in ``precision``'s compute dtype: the
    fastest of ``repeats`` runs of each of the model's GEMMs, ``rows`` tokens × hidden by
    hidden × hidden, × intermediate and intermediate × hidden, the best shape's rate."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    h = config.hidden_size
    i = getattr(config, "intermediate_size", 4 * h)
    dtype = Precision(precision).compute_dtype  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(0)
    best = 0.0
    for k, n in ((h, h), (h, i), (i, h)):
        a = torch.randn(rows, k, generator=gen).to(dtype)
        w = torch.randn(k, n, generator=gen).to(dtype)
        a @ w  # warm-up: kernel selection, page faults
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ w
            best = max(best, 2 * rows * k * n / (time.perf_counter() - t0))
    return best


def prompt_tokens(model_dir: Path, task: Path) -> float:
    """Mean prompt length in tokens over the task's prompts."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = [json.loads(x)["prompt"] for x in task.read_text().splitlines()]
    return statistics.mean(len(tok(p)["input_ids"]) for p in prompts)


def floor_seconds(params: int, flops: float, b: int, mean_prompt: float, generated: float) -> float:
    """The step's matmul FLOPs at ``flops`` FLOP/s: the update 6·P·(b prompts once + generated
    tokens), sampling 2·P·generated."""
    return (6 * params * (b * mean_prompt + generated) + 2 * params * generated) / flops


def cpu_name() -> str:
    """lscpu's model name (or the platform's processor string where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    import platform

    return platform.processor() or "unknown CPU"


def run_trl(model_dir: Path, task: Path, b: int, steps: int, out: Path, settings: dict,
            wl: Workload) -> Measured:
    """``settings`` override GRPOConfig's defaults."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    rows = [json.loads(x) for x in task.read_text().splitlines()]
    data = Dataset.from_list([{"prompt": r["prompt"], "gold": r["gold"]} for r in rows])

    lengths: list[int] = []

    from agpo.rewards import RewardConfig, build_reward
    from agpo.types import TaskItem

    # agpo's own verifier in the main thread, as agpo's run uses it (--reward.workers 0)
    verifier = build_reward(RewardConfig(verifier=wl.verifier, workers=0))

    def exact(completions, gold, completion_ids, **_):  # noqa: ANN001, ANN202
        lengths.extend(len(ids) for ids in completion_ids)  # TRL's ids keep the EOS, like agpo's mask
        items = [TaskItem(str(i), "", g) for i, g in enumerate(gold)]
        return [r.score for r in verifier.batch(items, completions)]

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            stamps.append(time.perf_counter())

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = GRPOConfig(
        # One optimizer step per b·G completions, MICRO at a time: TRL generates all b·G at once
        # (steps_per_generation follows gradient_accumulation_steps) and accumulates.
        output_dir=str(out), per_device_train_batch_size=wl.micro,
        gradient_accumulation_steps=b * G // wl.micro, num_generations=G,
        max_completion_length=wl.new_tokens, max_steps=steps, num_iterations=1, beta=0.0,
        learning_rate=wl.lr, logging_steps=1000, save_strategy="no", report_to=[], use_cpu=True,
        temperature=1.0, top_p=1.0, seed=0, dataloader_num_workers=0, disable_tqdm=True, **settings,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=exact, args=args, train_dataset=data,
                          processing_class=tok, callbacks=[Clock()])
    start = time.perf_counter()
    trainer.train()
    verifier.close()
    ends = [start, *stamps]
    opt_steps = trainer.state.global_step
    return Measured([ends[i + 1] - ends[i] for i in range(1, len(stamps))], statistics.mean(lengths),
                    len(lengths) and sum(lengths), opt_steps)


def _in_own_process(job: partial, threads: int) -> Measured:
    """Run one measurement in a fresh process: nothing one trainer leaves behind (vLLM's CPU
    backend binds the process's OpenMP threads, allocator state, imported kernels) slows the
    next."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        return pool.submit(job).result()


def _rounded(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in d.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=TINY, choices=sorted(WORKLOADS))
    ap.add_argument("--prompts", type=int, nargs="+", default=None,
                    help="prompts per step (default: 4 32 on the tiny model, 8 on a real one)")
    ap.add_argument("--steps", type=int, default=6, help="steps per trainer (the first is warm-up)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="repeat, rotating the order; medians over rounds")
    ap.add_argument("--engine", nargs="+", default=["transformers"], choices=["transformers", "vllm"],
                    help="agpo's rollout engine(s); the fastest is reported as agpo's")
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=PRECISIONS,
                    help="training precision(s), each measured for agpo, the reference pass and TRL")
    ap.add_argument("--trl-defaults", action="store_true",
                    help="TRL with its own gradient checkpointing (a recomputed forward) instead of the same math")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    args = ap.parse_args()
    wl = WORKLOADS[args.model]
    prompts = args.prompts or ([4, 32] if wl.model == TINY else [8])
    torch.set_num_threads(args.threads)
    cpu = cpu_name()
    print(f"{wl.model}: {cpu}, torch {torch.__version__}, threads {torch.get_num_threads()}, G {G}, "
          f"{wl.new_tokens} new tokens, {args.steps - 1} timed steps (median), {args.rounds} round(s), "
          f"TRL {'with gradient checkpointing' if args.trl_defaults else 'same math (no checkpointing)'}, "
          f"agpo engines {' '.join(args.engine)}, precisions {' '.join(args.precision)}")
    print(f"{'prompts×G':>10} {'precision':>10} {'engine':>12} {'agpo s/step':>12} {'TRL s/step':>11} "
          f"{'agpo c/s':>9} {'TRL c/s':>8} {'ratio':>6} {'ref s':>7} {'of it fwd/bwd':>13} {'agpo/ref':>8} "
          f"{'ceiling':>8} {'GFLOP/s':>8} {'floor s':>8} {'agpo/floor':>10} {'TRL/floor':>9} "
          f"{'tok/c agpo':>10} {'tok/c TRL':>9}")
    results = []
    for b in prompts:
        for precision in args.precision:
            results.append(_measure_workload(b, precision, args, wl, cpu))
    if args.json:
        # one workload: its fields at the top level; several: the first's, and all under "workloads"
        print(json.dumps({**results[0], "workloads": results}))


def _measure_workload(b: int, precision: str, args: argparse.Namespace, wl: Workload, cpu: str) -> dict:
    """Every measurement of b prompts × G in ``precision`` (rounds, engines, TRL, the floor);
    prints its rows and returns its JSON record."""
    got_rounds: list[dict[str, Measured]] = []
    for rnd in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            model_dir, task = build(work, max(b, 8) * args.steps, wl)
            if rnd == 0:
                # the machine's matmul rate in this precision, and the workload's token counts
                flops = _in_own_process(partial(gemm_flops, model_dir, precision), args.threads)
                params = matmul_params(model_dir)
                mean_prompt = prompt_tokens(model_dir, task)
            jobs = {}
            for e in args.engine:
                jobs[f"agpo:{e}"] = partial(run_agpo, model_dir, task, b, args.steps, args.threads,
                                            work / f"agpo-{e}", wl, e, precision)
                jobs[f"ref:{e}"] = partial(run_reference, model_dir, task, b, args.steps, wl, e, precision)
            jobs["trl"] = partial(run_trl, model_dir, task, b, args.steps, work / "trl",
                                  trl_settings(precision, args.trl_defaults), wl)
            # Rotating the order spreads the machine's slow phases over every measurement.
            names = list(jobs)[rnd % len(jobs):] + list(jobs)[: rnd % len(jobs)]
            got: dict[str, Measured] = {}
            for name in names:
                got[name] = _in_own_process(jobs[name], args.threads)
                # each measurement as it lands: a long run stopped early still shows them
                print(f"# {b}×{G} {precision} round {rnd} {name}: s/step {[round(x, 2) for x in got[name].times]}, "
                      f"tok/completion {got[name].tokens_per_completion:.1f}"
                      + (f", phases {_rounded(got[name].phases)}" if got[name].phases else "")
                      + (f", fwd/bwd {[round(x, 2) for x in got[name].update_times]}"
                         if got[name].update_times else ""), flush=True)
            got_rounds.append(got)
    med = lambda key: statistics.median(statistics.median(g[key].times) for g in got_rounds)  # noqa: E731
    t_trl = med("trl")
    len_trl = statistics.mean(g["trl"].tokens_per_completion for g in got_rounds)
    per_engine = {}
    for e in args.engine:
        t_agpo, t_ref = med(f"agpo:{e}"), med(f"ref:{e}")
        t_fb = statistics.median(statistics.median(g[f"ref:{e}"].update_times) for g in got_rounds)
        len_agpo = statistics.mean(g[f"agpo:{e}"].tokens_per_completion for g in got_rounds)
        generated = statistics.median(t for g in got_rounds for t in g[f"agpo:{e}"].step_tokens or [0])
        t_floor = floor_seconds(params, flops, b, mean_prompt, generated)
        n = b * G
        print(f"{f'{b}×{G}':>10} {precision:>10} {e:>12} {t_agpo:12.3f} {t_trl:11.3f} {n / t_agpo:9.1f} "
              f"{n / t_trl:8.1f} {t_trl / t_agpo:6.2f} {t_ref:7.3f} {t_fb:13.3f} {t_agpo / t_ref:8.2f} "
              f"{t_trl / t_ref:8.2f} {flops / 1e9:8.1f} {t_floor:8.3f} {t_agpo / t_floor:10.1f} "
              f"{t_trl / t_floor:9.1f} {len_agpo:10.1f} {len_trl:9.1f}", flush=True)
        per_engine[e] = {
            "agpo_s_per_step": t_agpo, "ref_s": t_ref, "ref_fwd_bwd_s": t_fb,
            "speedup": t_trl / t_agpo, "agpo_over_ref": t_agpo / t_ref, "ceiling": t_trl / t_ref,
            "floor_s": t_floor, "agpo_over_floor": t_agpo / t_floor, "trl_over_floor": t_trl / t_floor,
            "floor_generated_tokens": generated, "tokens_per_completion": len_agpo,
            "tokens_generated": [g[f"agpo:{e}"].tokens for g in got_rounds],
            "optimizer_steps": [g[f"agpo:{e}"].opt_steps for g in got_rounds],
            "agpo_phases_s": [g[f"agpo:{e}"].phases for g in got_rounds],
        }
    best = min(per_engine, key=lambda e: per_engine[e]["agpo_s_per_step"])
    return {
        "model": wl.model, "cpu": cpu, "precision": precision, "prompts": b, "group_size": G,
        "max_new_tokens": wl.new_tokens, "steps": args.steps, "timed_steps": args.steps - 1,
        "rounds": args.rounds, "threads": args.threads, "matmul_flops_per_s": flops,
        "matmul_params": params, "mean_prompt_tokens": mean_prompt, "engine": best, **per_engine[best],
        "trl_s_per_step": t_trl, "trl_tokens_per_completion": len_trl,
        "trl_tokens_generated": [g["trl"].tokens for g in got_rounds],
        "trl_optimizer_steps": [g["trl"].opt_steps for g in got_rounds],
        "trl_settings": trl_settings(precision, args.trl_defaults), "engines": per_engine,
    }


if __name__ == "__main__":
    main()
