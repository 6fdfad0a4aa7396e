"""The testbed's base model: corpus → tiny Llama pretrained with plain torch → cached folder.

The base model is a function of its recipe: same recipe (seed included) → same weights, bit for
bit on CPU with one thread. The build always pretrains on ``BUILD_THREADS`` (1) torch threads,
whoever asks for it (``agpo testbed build``, or ``--model testbed`` building on first use):
float sums change with the thread count, and the cache folder is named by the recipe alone.
It is cached under ``$AGPO_CACHE/testbed/<recipe-hash>/`` (default ``~/.cache/agpo``), written
to a temporary folder and renamed, so a killed build leaves nothing that looks finished and
later runs start at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedTokenizerFast

from agpo.errors import UserError
from agpo.io import dumps_finite
from agpo.models import cache_root, quiet_transformers
from agpo.tasks import testbed as tasks
from agpo.models.tiny import char_tokenizer, tiny_llama

if TYPE_CHECKING:
    from rich.console import Console

RECIPE_VERSION = 2
"""Bumped whenever the corpus or the training code changes what a recipe produces."""
PROMPT_LEN = 8  # "a0a1a2+b0b1b2="
BUILD_THREADS = 1
"""torch threads of every base-model build (the weights depend on it; see the module docstring)."""


@dataclass(frozen=True)
class Recipe:
    """Everything the base model's weights depend on (its hash names the cache folder)."""

    task: str = "testbed_add"
    """The testbed task whose corpus the model is pretrained on: testbed_add (answer only) or
    testbed_add_steps (column sums written before the answer)."""
    p_b: float = 0.03
    """Share of the rare strategy B (right only on S problems) in the corpus."""
    p_s: float = tasks.S_SHARE
    """Share of S problems (units carry) in the corpus."""
    noise: float = 0.2
    """Probability that the units / hundreds digit is replaced by a random wrong digit."""
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    steps: int = 1000
    """Pretraining optimiser steps."""
    batch: int = 256
    """Sequences per step."""
    lr: float = 3e-3
    """AdamW peak learning rate (linear warm-up, cosine decay to 10%)."""
    warmup: int = 50
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        if self.task not in tasks.TASK_ALPHABETS:
            raise UserError(f"testbed recipe task {self.task!r}: use one of "
                            f"{', '.join(sorted(tasks.TASK_ALPHABETS))}")

    def hash(self) -> str:
        blob = json.dumps({"version": RECIPE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_dir(seed: int, recipe: Recipe) -> Path:
    return cache_root() / "testbed" / f"{recipe.hash()}-seed{seed}"


def testbed_tokenizer(task: str = "testbed_add") -> PreTrainedTokenizerFast:
    """The character tokenizer of a testbed task (testbed_add's ids stay those of its alphabet,
    so its cached models keep loading)."""
    return char_tokenizer(tasks.TASK_ALPHABETS[task])


# --------------------------------------------------------------------------- corpus


def corpus_text(rng: random.Random, recipe: Recipe, held_out: frozenset[int]) -> str:
    """One pretraining example, prompt + completion, drawn from the flawed-solver mixture."""
    while True:
        p = tasks.draw_problem(rng, rng.random() < recipe.p_s)
        if p.key not in held_out:
            break
    strategy = "B" if rng.random() < recipe.p_b else "A"
    digits = list(tasks.strategy_digits(p, strategy))
    for col in (0, 2):  # never the tens digit: the only one A and B disagree on
        if rng.random() < recipe.noise:
            digits[col] = (digits[col] + rng.randint(1, 9)) % 10
    if recipe.task == "testbed_add_steps":
        return p.prompt + tasks.render_steps(p, strategy, digits)
    return p.prompt + tasks.render_completion(strategy, digits)


def encode_batch(texts: list[str], tok: PreTrainedTokenizerFast) -> torch.Tensor:
    """Token ids [N, L] of corpus texts, EOS appended, right-padded with the pad id to the
    longest (testbed_add's texts are equal-length: no padding).

    A character lookup instead of ``tok.encode``: the fast tokenizer's per-call overhead was a
    sixth of the pretraining time. Equal to ``tok.encode`` (a test checks).
    """
    vocab = tok.get_vocab()
    rows = [[vocab[c] for c in t] + [tok.eos_token_id] for t in texts]
    width = max(len(r) for r in rows)
    return torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])


# --------------------------------------------------------------------------- pretraining


def _lr_at(step: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    frac = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def pretrain(
    seed: int, recipe: Recipe, progress: Callable[[int, float], None] | None = None
) -> tuple[torch.nn.Module, PreTrainedTokenizerFast, list[float]]:
    """Train the tiny Llama on the corpus; returns (model, tokenizer, loss per step)."""
    tok = testbed_tokenizer(recipe.task)
    model = tiny_llama(
        len(tok), recipe.hidden, recipe.layers, recipe.heads, recipe.kv_heads, 64, seed=seed
    )
    rng = random.Random(seed)
    held_out = tasks.test_keys()
    opt = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, betas=(0.9, 0.95), weight_decay=recipe.weight_decay
    )
    losses: list[float] = []
    model.train()
    for step in range(recipe.steps):
        ids = encode_batch([corpus_text(rng, recipe, held_out) for _ in range(recipe.batch)], tok)
        # The loss covers the completion and EOS only: the prompt digits are uniform noise the
        # model has no use for predicting.
        logits = model(input_ids=ids[:, :-1]).logits[:, PROMPT_LEN - 1 :]  # (N, T+1, V)
        targets = ids[:, PROMPT_LEN:]  # (N, T+1)
        if recipe.task != "testbed_add":  # worked steps vary in length: skip the padding
            targets = targets.masked_fill(targets == tok.pad_token_id, -100)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, recipe)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, losses[-1])
    model.eval()
    return model, tok, losses


def build_base_model(
    seed: int = 0,
    recipe: Recipe | None = None,
    *,
    force: bool = False,
    progress: Callable[[int, float], None] | None = None,
) -> Path:
    """The cached ``from_pretrained`` folder (model + tokenizer) for (seed, recipe); built once."""
    recipe = recipe or Recipe()
    final = model_dir(seed, recipe)
    if final.exists() and not force:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]), _threads(BUILD_THREADS):
        torch.manual_seed(seed)
        model, tok, losses = pretrain(seed, recipe, progress)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        info = {
            "seed": seed,
            "recipe": asdict(recipe),
            "recipe_hash": recipe.hash(),
            "recipe_version": RECIPE_VERSION,
            "final_loss": sum(losses[-50:]) / len(losses[-50:]),
            "pretrain_s": round(time.perf_counter() - start, 1),
            "torch_threads": BUILD_THREADS,
        }
        (tmp / "testbed.json").write_text(dumps_finite(info, indent=1) + "\n")
        if force and final.exists():
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same recipe first: keep theirs
            if not final.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def base_model_folder(seed: int = 0, recipe: Recipe | None = None, *, console: Console | None = None) -> Path:
    """``build_base_model`` for a caller with no display of its own (``--model testbed``): a
    cache hit returns at once; a build (minutes) shows a rich progress bar on stderr (or on
    ``console``, a ``rich.console.Console``) with the pretraining step and loss."""
    recipe = recipe or Recipe()
    final = model_dir(seed, recipe)
    if final.exists():
        return final
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = console or Console(stderr=True)
    columns = (TextColumn(f"building the testbed base model ({recipe.task}, seed {seed}, cached "
                          "after this once)"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("pretrain", total=recipe.steps, loss=float("nan"))
        return build_base_model(seed, recipe, progress=lambda s, loss: bar.update(task, completed=s, loss=loss))


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
