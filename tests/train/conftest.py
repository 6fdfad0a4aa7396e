"""A trivial verifiable task for training tests: the answer is the single character "7".

The model is a random tiny Llama over a 16-token vocabulary (digits, '+', '=', ' ', specials),
so "7" starts at probability ≈ 1/16 and a few steps of a high learning rate raise it clearly.
The response budget is one token: a run step takes a few milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agpo.models.tiny import char_tokenizer, tiny_llama

# Flags shared by the training tests: tiny model, one-token answers, exact match, 1 thread.
FAST = [
    "--reward.verifier", "exact", "--reward.workers", "0",
    "--rollout.max-new-tokens", "1",
    "--train.prompts-per-step", "8", "--train.group-size", "8", "--train.micro-batch-size", "32",
    "--train.threads", "1", "--optim.lr", "1e-2", "--log.no-progress",
]


@pytest.fixture(scope="session")
def seven_model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("seven_model")
    tok = char_tokenizer("0123456789+= ")
    tok.save_pretrained(path)
    tiny_llama(len(tok), hidden=32, layers=2, heads=4, kv_heads=2, seed=1).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def seven_task(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("seven_task") / "seven.jsonl"
    with path.open("w") as f:
        for i in range(64):
            f.write(json.dumps({"id": f"p{i}", "prompt": f"{i}+{i % 7}=", "gold": "7"}) + "\n")
    return path


@pytest.fixture(scope="session")
def base_flags(seven_model_dir, seven_task) -> list[str]:
    return ["--model.path", str(seven_model_dir), "--task.spec", str(seven_task), *FAST]


@pytest.fixture(scope="session")
def read_metrics():
    """metrics.jsonl of a run directory as a list of dicts."""

    def read(run_dir: Path) -> list[dict]:
        return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

    return read
