"""The built-in real model end to end through the commands a user runs: a chat-template eval of
word problems in GSM8K's layout, training steps (grpo with KL to a reference, agpo_asym, LoRA)
that move the weights with sane metrics, and checkpoints that agpo eval and from_pretrained load.

Budgets are the smallest that still show each effect (SmolLM2-135M on 2 cores: ≈ 70 generated
tokens/s): 2 prompts × 4 samples × 8 new tokens per training step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agpo.cli import main as agpo

pytestmark = pytest.mark.slow
SMOLLM2 = "smollm2-135m-instruct"
# One-step word problems in GSM8K's layout ("#### answer"): the base model solves these often.
PROBLEMS = [
    ("Tom has 2 apples and buys 3 more. How many apples does Tom have now?", "Tom has 2+3=5.\n#### 5"),
    ("What is 10 + 10?", "10+10=20\n#### 20"),
]


@pytest.fixture
def cache(smollm2_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGPO_CACHE", str(smollm2_dir.parent.parent))
    return smollm2_dir


@pytest.fixture
def gsm8k_file(tmp_path: Path) -> Path:
    path = tmp_path / "word.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in PROBLEMS))
    return path


def test_chat_template_eval_solves_word_problems(cache: Path, gsm8k_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert agpo(["eval", "--model", SMOLLM2, "--task", str(gsm8k_file), "--n", "16",
                 "--template", "chat", "--max-new-tokens", "40", "--temperature", "0.7",
                 "--workers", "0", "--no-progress", "--out", str(out)]) == 0
    passk = json.loads((out / "passk.json").read_text())
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 16
    assert passk["pass@16"] > 0  # free-text answers, found and verified by the math verifier
    assert 0 <= passk["pass@1"] <= passk["pass@16"] <= 1


def _train(out: Path, *flags: str) -> list[dict]:
    assert agpo(["train", "--model.path", SMOLLM2, "--task.spec", "arith", "--task.template", "chat",
                 "--rollout.max-new-tokens", "8", "--train.prompts-per-step", "2",
                 "--train.group-size", "4", "--train.micro-batch-size", "4", "--train.steps", "1",
                 "--reward.workers", "0", "--optim.lr", "1e-5", "--log.no-progress",
                 "--out", str(out), *flags]) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _sane(m: dict) -> None:
    assert all(math.isfinite(v) for v in m.values() if isinstance(v, float)), m
    assert 0.0 <= m["reward/mean"] <= 1.0
    assert 0 < m["perf/tokens_total"] <= 2 * 4 * 8  # B × G × max-new-tokens


def _moved(ckpt: Path, base: Path) -> float:
    a, b = load_file(str(ckpt / "model.safetensors")), load_file(str(base / "model.safetensors"))
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize("advantage, kl", [("grpo", "0.04"), ("agpo_asym", "0")])
def test_one_training_step_moves_the_weights(advantage: str, kl: str, cache: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / advantage
    # agpo_asym gives every response a non-zero advantage (−1 on an all-wrong group), so its
    # step always moves the weights; grpo's moves them only when a group is mixed.
    (m,) = _train(out, "--algo.advantage", advantage, "--algo.kl-coef", kl)
    _sane(m)
    ckpt = out / "checkpoints" / "step_1"
    moved = _moved(ckpt, cache)
    if advantage == "agpo_asym" or 0 < m["reward/mean"] < 1:
        assert moved > 0
    if kl != "0":
        # Before the first update π_θ = π_ref on the sampled tokens: k3 = e^0 + 0 − 1 = 0.
        assert m["loss/ref_kl"] == pytest.approx(0.0, abs=1e-6)
    # The checkpoint is a from_pretrained folder with its tokenizer and chat template.
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert (ckpt / "chat_template.jinja").is_file() or "chat_template" in (ckpt / "tokenizer_config.json").read_text()


def test_a_lora_step_trains_adapters_only_and_agpo_eval_loads_them(cache: Path, gsm8k_file: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "lora"
    (m,) = _train(out, "--algo.advantage", "agpo_asym", "--model.lora-rank", "4", "--algo.kl-coef", "0.04")
    _sane(m)
    ckpt = out / "checkpoints" / "step_1"
    adapters = load_file(str(ckpt / "adapter_model.safetensors"))
    # LoRA's B starts at 0: a non-zero B after the step is the update (A is random from the start).
    assert any(v.abs().max() > 0 for k, v in adapters.items() if "lora_B" in k)
    assert not (ckpt / "model.safetensors").exists()  # the 517 MB base is not copied
    ev = tmp_path / "eval"
    assert agpo(["eval", "--model", str(ckpt), "--task", str(gsm8k_file), "--limit", "1", "--n", "2",
                 "--template", "chat", "--max-new-tokens", "4", "--workers", "0", "--no-progress",
                 "--out", str(ev)]) == 0
    assert json.loads((ev / "passk.json").read_text())["model"] == str(ckpt)


def test_chunked_scoring_on_the_real_vocabulary(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agpo.models import load
    from agpo.policy import forward as engine
    from agpo.policy import response_logprobs
    from agpo.types import Rollout

    model, tok = load(SMOLLM2)
    ids = tok(["The capital of France is Paris.", "2 + 2 = 4"], return_tensors="pt", padding=True)
    p = 3
    rows = Rollout(prompt_ids=ids.input_ids[:, :p], prompt_mask=ids.attention_mask[:, :p],
                   response_ids=ids.input_ids[:, p:], response_mask=ids.attention_mask[:, p:],
                   logprobs=torch.zeros(2, ids.input_ids.shape[1] - p),
                   temperatures=torch.tensor([1.0, 0.7]), truncated=torch.zeros(2, dtype=torch.bool),
                   texts=["", ""])
    with torch.no_grad():
        chunked = response_logprobs(model, rows, rows.temperatures, chunk=3)  # 49,152 × 3 at a time
        monkeypatch.setattr(engine, "split_head", lambda m: None)
        full = response_logprobs(model, rows, rows.temperatures)
    torch.testing.assert_close(chunked[0], full[0], atol=2e-5, rtol=0)
    torch.testing.assert_close(chunked[1], full[1], atol=2e-5, rtol=0)


def test_a_shared_chat_prompt_on_the_real_model(cache: Path) -> None:
    # A group's chat prompt runs once (its KV cache indexed out to the G rows): the same
    # log-probs and gradients as running it in every row, on the real architecture and vocabulary.
    from agpo.models import load
    from agpo.policy import response_logprobs
    from agpo.types import Rollout

    model, tok = load(SMOLLM2)
    chat = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                   add_generation_prompt=True)
    prompt = tok([chat], return_tensors="pt").input_ids.repeat(3, 1)  # [3, P]: one group
    answers = tok(["5", "It is 5.", "2 + 3 = 6"], return_tensors="pt", padding="longest",
                  padding_side="right", add_special_tokens=False)
    rows = Rollout(prompt_ids=prompt, prompt_mask=torch.ones_like(prompt),
                   response_ids=answers.input_ids, response_mask=answers.attention_mask,
                   logprobs=torch.zeros(answers.input_ids.shape), temperatures=torch.tensor([1.0, 0.7, 1.0]),
                   truncated=torch.zeros(3, dtype=torch.bool), texts=["", "", ""])
    weight = model.model.layers[0].self_attn.q_proj.weight
    got = []
    for share in (True, False):
        model.zero_grad()
        lp, _ = response_logprobs(model, rows, rows.temperatures, with_entropy=False, share_prompts=share)
        lp.sum().backward()
        got.append((lp.detach(), weight.grad.clone()))
    torch.testing.assert_close(got[0][0], got[1][0], atol=1e-4, rtol=0)
    torch.testing.assert_close(got[0][1], got[1][1], atol=1e-6, rtol=1e-3)
