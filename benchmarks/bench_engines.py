"""Which rollout engine samples faster, per workload: agpo's transformers sampler against the
in-process vLLM engine on SmolLM2-135M-Instruct, short and long completions, small and large
groups, and what one weight push into vLLM costs.

Each engine runs in a fresh process (vLLM binds the process's OpenMP threads and keeps its KV
cache), over every workload in turn: a warm-up call, then --repeats timed calls, the fastest
kept (the least disturbed on a shared machine). A vLLM call that follows an optimizer step also
pushes the weights: "push s" is that push alone (every parameter changed, as after a full
fine-tuning step), timed separately; "vLLM step s" adds it to vLLM's sampling. The peak resident
memory of each engine's process (model, engine, KV cache) closes the table.

Runs in .venv-vllm (scripts/vllm_env.sh), which holds both engines.

    .venv-vllm/bin/python benchmarks/bench_engines.py [--prompts 4] [--groups 4 16] \
        [--new-tokens 12 128] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import torch
# the gap benchmark's chat prompts (this folder is on sys.path); it sets vLLM's in-process mode
from bench_engine_gap import QUESTIONS


def run_engine(engine: str, prompts: int, groups: list[int], new_tokens: list[int], repeats: int,
               threads: int) -> dict:
    """Sampling seconds per (G, max new tokens) of one engine, its push seconds (vLLM), and the
    process's peak resident memory in GB."""
    from agpo.models import load
    from agpo.rollout import SamplingConfig, build_engine
    from agpo.tasks.templates import render_prompt
    from agpo.types import TaskItem

    torch.set_num_threads(threads)
    model, tok = load("smollm2-135m-instruct")
    model.eval()
    texts = [render_prompt(TaskItem(str(i), q, ""), "chat", tok) for i, q in enumerate(QUESTIONS[:prompts])]
    out: dict = {"sample": {}, "tokens": {}, "push": []}
    sampler = None
    gen = torch.Generator().manual_seed(0)
    for g in groups:
        for t in new_tokens:
            cfg = SamplingConfig(max_new_tokens=t, engine=engine, vllm_kv_cache_gb=1, batch_size=256)
            if sampler is None:
                sampler = build_engine(engine, model, tok, cfg)
            rows = [p for p in texts for _ in range(g)]
            best, tokens = float("inf"), 0
            for rep in range(repeats + 1):  # the first is warm-up
                t0 = time.perf_counter()
                r = sampler.sample(rows, torch.ones(len(rows)), cfg, gen)
                seconds = time.perf_counter() - t0
                if rep:
                    best, tokens = min(best, seconds), int(r.response_mask.sum())
            out["sample"][f"{g}x{t}"], out["tokens"][f"{g}x{t}"] = best, tokens
            # as each lands: a run stopped early still shows them
            print(f"# {engine} G {g}, ≤ {t} new tokens: {best:.2f} s, {tokens} tokens", flush=True)
    if engine == "vllm":
        for _ in range(repeats):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.0)  # an in-place change: what an optimizer step does to the versions
            t0 = time.perf_counter()
            sampler.sync()
            out["push"].append(time.perf_counter() - t0)
    sampler.close()
    out["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--groups", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--new-tokens", type=int, nargs="+", default=[12, 128])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    got = {}
    for engine in ("transformers", "vllm"):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            got[engine] = pool.submit(run_engine, engine, args.prompts, args.groups, args.new_tokens,
                                      args.repeats, args.threads).result()
        print(f"# {engine}: {got[engine]}", flush=True)
    push = min(got["vllm"]["push"]) if got["vllm"]["push"] else float("nan")
    print(f"SmolLM2-135M-Instruct, {args.prompts} chat prompts × G, τ = 1, fp32, {args.threads} threads, "
          f"fastest of {args.repeats}; one vLLM weight push (all 135M parameters): {push:.2f} s")
    print(f"{'G':>3} {'max new':>7} {'tok/row tf':>10} {'tok/row vLLM':>12} {'transformers s':>14} "
          f"{'vLLM s':>7} {'vLLM step s':>11} {'faster':>12}")
    for g in args.groups:
        for t in args.new_tokens:
            key = f"{g}x{t}"
            tf, vl = got["transformers"]["sample"][key], got["vllm"]["sample"][key]
            rows = args.prompts * g
            faster = "vllm" if vl + push < tf else "transformers"
            print(f"{g:>3} {t:>7} {got['transformers']['tokens'][key] / rows:10.1f} "
                  f"{got['vllm']['tokens'][key] / rows:12.1f} {tf:14.2f} {vl:7.2f} {vl + push:11.2f} "
                  f"{faster:>12}")
    print(f"peak resident memory: transformers {got['transformers']['peak_gb']:.1f} GB, "
          f"vLLM {got['vllm']['peak_gb']:.1f} GB")


if __name__ == "__main__":
    main()
