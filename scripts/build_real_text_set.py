"""Sample the real completions behind tests/rewards/data/real_text.jsonl (unlabelled).

The built-in model smollm2-135m-instruct answers procedural arithmetic (``arith``: sums,
differences, products and one-step word problems, src/agpo/tasks/arith.py), two-step word
problems (the generator of benchmarks/bench_train_vs_trl.py) and the GSM8K fixture of
tests/tasks/fixtures/, under the chat, deepseek_math and qwen_math_cot templates. Sampling is
``agpo eval`` itself (``agpo.eval.cli.evaluate``), each run into its own folder under
``--work`` (default: next to ``--out``): an interrupted build rerun with the same flags resumes
where it stopped, as ``agpo eval`` does.

The rows written carry the problem, the gold, the completion and their provenance (model,
task, template, seed, sampling settings, problem id, sample index) and nothing of the eval's
own verdict: the labels of the set are added afterwards by a person reading each completion's
final stated answer (the rule is in docs/grading.md), never by a verifier.

    python scripts/build_real_text_set.py --out /tmp/real_text_unlabelled.jsonl

The set's rows ``real-000`` … ``real-241`` are RUNS 0–7 in order, ``real-242`` … ``real-345``
RUNS 8–10 (added later with ``--runs 8,9,10``), sampled on a 2-core AMD EPYC (AVX2) in fp32
with torch 2.13.0+cpu. A rerun on the same machine and library versions repeats the
completions (seeded streams); another processor may round differently and draw other texts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Run:
    """One ``agpo eval`` call: ``limit`` problems of ``task`` × ``n`` samples each."""

    task: str
    template: str
    limit: int
    n: int
    temperature: float = 0.6  # agpo eval's defaults (the reasoning-boundary protocol)
    top_p: float = 0.95
    max_new_tokens: int = 320
    seed: int = 0


WORD2 = "word2"  # the two-step word problems, written to a task file first
GSM8K = "gsm8k_fixture"
RUNS = (
    Run("arith", "chat", limit=16, n=4),
    Run("arith", "chat", limit=16, n=2, temperature=1.0, top_p=1.0, seed=1),  # arith.py's regime
    Run("arith", "deepseek_math", limit=10, n=3),
    Run("arith", "qwen_math_cot", limit=10, n=3),
    Run(WORD2, "chat", limit=10, n=3),
    Run(WORD2, "deepseek_math", limit=8, n=3),
    Run(WORD2, "qwen_math_cot", limit=8, n=3),
    Run(GSM8K, "chat", limit=2, n=4),
    # Low temperature on the sums the model gets right most often: correct answers, in the
    # phrasings it states them with.
    Run("arith_add", "chat", limit=24, n=2, temperature=0.3, seed=2),
    Run("arith_add", "qwen_math_cot", limit=12, n=2, temperature=0.3, seed=2),
    Run("arith_word", "chat", limit=16, n=2, temperature=0.3, seed=2),
)


def word_problems(path: Path, count: int) -> Path:
    """The benchmark's two-step word problems (``word_problem(i)``) as an agpo task file."""
    spec = importlib.util.spec_from_file_location(
        "bench_train_vs_trl", ROOT / "benchmarks" / "bench_train_vs_trl.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up there
    spec.loader.exec_module(bench)
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            text, answer = bench.word_problem(i)
            f.write(json.dumps({"id": f"word2-{i}", "prompt": text, "gold": str(answer)}) + "\n")
    return path


def sample(index: int, run: Run, workdir: Path) -> list[dict[str, object]]:
    """The run's completions, one row per sample, with their provenance."""
    from agpo.eval.cli import evaluate

    task = {WORD2: str(workdir / "word2.jsonl"),
            GSM8K: str(ROOT / "tests" / "tasks" / "fixtures" / "gsm8k.jsonl")}.get(run.task,
                                                                                   run.task)
    out = workdir / f"run{index:02d}-{run.task}-{run.template}"
    evaluate(MODEL, task, run.n, out, template=run.template, limit=run.limit,
             temperature=run.temperature, top_p=run.top_p, max_new_tokens=run.max_new_tokens,
             seed=run.seed, workers=1, batch_size=32, device="cpu", dtype="fp32")
    problems = {p["id"]: p for p in map(json.loads, (out / "problems.jsonl").open())}
    rows = []
    for s in map(json.loads, (out / "samples.jsonl").open()):
        p = problems[s["problem_id"]]
        rows.append({"model": MODEL, **asdict(run), "problem_id": s["problem_id"],
                     "sample": s["sample"], "prompt": p["prompt"], "gold": p["gold"],
                     "completion": s["completion"], "truncated": s["truncated"]})
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the unlabelled rows (JSONL)")
    parser.add_argument("--runs", type=str, default=None,
                        help="comma-separated indices into RUNS (default: all of them)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder of the runs' evals (default: OUT's name + '.work')")
    args = parser.parse_args(argv)
    chosen = list(range(len(RUNS))) if args.runs is None else args.runs.split(",")
    if any(not str(i).isdigit() or int(i) >= len(RUNS) for i in chosen):
        parser.error(f"--runs {args.runs}: give indices 0 to {len(RUNS) - 1}, comma-separated")
    work = args.work or args.out.with_name(args.out.name + ".work")
    labelled = ROOT / "tests" / "rewards" / "data" / "real_text.jsonl"
    if args.out.resolve() == labelled.resolve():
        parser.error(f"{labelled} holds the hand labels; write the samples elsewhere")
    import torch

    torch.set_num_threads(1)  # as the set was sampled (a thread count may change the rounding)
    rows = []
    work.mkdir(parents=True, exist_ok=True)
    if any(RUNS[int(i)].task == WORD2 for i in chosen):
        word_problems(work / "word2.jsonl", 16)
    for i in map(int, chosen):
        rows += sample(i, RUNS[i], work)
        print(f"{RUNS[i].task} {RUNS[i].template}: {len(rows)} rows", file=sys.stderr)
    from agpo.io import replace_text

    replace_text(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} completions → {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
