"""Sampling throughput: agpo's sampler against transformers' ``generate`` (what TRL samples with)
on the same model, prompts and budget, in one invocation; and what dropping finished rows from
the decode batch is worth (agpo's sampler with it switched off is the third column).

Two workloads on the training benchmark's tiny Llama (hidden 128, 2 layers, random init):
- uniform: 256 rows × at most 32 new tokens; a random model rarely stops, so nearly every row
  runs the whole budget (dropping rows cannot help; it must not hurt).
- long-tail: 256 rows × at most 256 new tokens, with frequent characters made stop tokens so
  lengths are roughly geometric (mean ≈ 20, the longest several times that), like reasoning traces whose
  lengths spread over orders of magnitude.

    .venv/bin/python benchmarks/bench_sampler.py [--repeats 3] [--threads 1]

Each column is the fastest of --repeats interleaved runs (the least disturbed measurement on a
shared machine). Tokens/s counts generated tokens (EOS included) of each side; both sample the
same distribution, so their mean lengths agree to within sampling noise.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import torch
from transformers.cache_utils import DynamicLayer

from agpo.rollout import SamplingConfig, sample
from agpo.rollout.sampler import prepare_tokenizer
from agpo.models.tiny import char_tokenizer, tiny_llama

ROWS = 256
PROMPTS = [f"{i * 37 % 1000}+{i * 11 % 100}=" for i in range(ROWS // 8) for _ in range(8)]


@contextmanager
def rows_kept():
    """agpo's sampler as it was before finished rows left the batch: it drops rows only when
    the cache can select rows, so hide that ability."""
    select = DynamicLayer.batch_select_indices
    del DynamicLayer.batch_select_indices
    try:
        yield
    finally:
        DynamicLayer.batch_select_indices = select


def run_agpo(model, tok, max_new: int, seed: int) -> tuple[float, int]:  # noqa: ANN001
    cfg = SamplingConfig(max_new_tokens=max_new, batch_size=ROWS)
    t0 = time.perf_counter()
    r = sample(model, tok, PROMPTS, torch.ones(ROWS), cfg, torch.Generator().manual_seed(seed))
    return time.perf_counter() - t0, int(r.response_mask.sum())


def run_generate(model, tok, max_new: int, seed: int) -> tuple[float, int]:  # noqa: ANN001
    torch.manual_seed(seed)
    stops = model.generation_config.eos_token_id
    t0 = time.perf_counter()
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    out = model.generate(**enc, do_sample=True, max_new_tokens=max_new, temperature=1.0, top_p=1.0,
                         top_k=0, eos_token_id=stops, pad_token_id=tok.pad_token_id)
    seconds = time.perf_counter() - t0
    new = out[:, enc["input_ids"].shape[1]:]
    ended = torch.isin(new, torch.tensor(stops))
    # Tokens up to and including each row's first stop token (the rest is padding).
    tokens = int(((ended.long().cumsum(-1) - ended.long()) == 0).sum())
    return seconds, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = char_tokenizer()
    prepare_tokenizer(tok)
    model = tiny_llama(len(tok), hidden=128, layers=2, heads=4, kv_heads=2, seed=0).eval()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {ROWS} rows, "
          f"fastest of {args.repeats}")
    print(f"{'workload':>10} {'agpo s':>7} {'rows kept s':>11} {'generate s':>10} {'tok/row agpo':>12} "
          f"{'tok/row gen':>11} {'agpo vs generate':>16} {'dropping rows':>13}")
    workloads = {"uniform": (32, [tok.eos_token_id]),
                 "long-tail": (256, [tok.eos_token_id, *tok.convert_tokens_to_ids(list("0123"))])}
    for name, (max_new, stops) in workloads.items():
        model.generation_config.eos_token_id = stops
        times: dict[str, list[tuple[float, int]]] = {"agpo": [], "kept": [], "generate": []}
        for rep in range(args.repeats):  # interleaved, so a slow phase of the machine hits all three
            times["agpo"].append(run_agpo(model, tok, max_new, rep))
            with rows_kept():
                times["kept"].append(run_agpo(model, tok, max_new, rep))
            times["generate"].append(run_generate(model, tok, max_new, rep))
        best = {key: min(runs) for key, runs in times.items()}
        (a, ta), (k, _), (g, tg) = best["agpo"], best["kept"], best["generate"]
        print(f"{name:>10} {a:7.3f} {k:11.3f} {g:10.3f} {ta / ROWS:12.1f} {tg / ROWS:11.1f} "
              f"{g / a:15.2f}× {k / a:12.2f}×")


if __name__ == "__main__":
    main()
