"""Annotate a pool of pairs with a trained teacher: k self-consistency samples per pair → a
majority label, its confidence and the samples' agreement. Batches are appended to a jsonl file
as they finish, so a killed run resumes where it stopped and produces the same file as an
uninterrupted one (each batch's sampling seed depends only on its index).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agpo.apps.relevance.data import Pair
from agpo.apps.relevance.labels import LabelScheme
from agpo.apps.relevance.teacher import TEMPLATE, render
from agpo.errors import at
from agpo.io import dumps_finite, iter_jsonl, naming, replace_text

KEYS = ("query_id", "product_id")


@dataclass(frozen=True)
class AnnotateConfig:
    k: int = 5
    """Self-consistency samples per pair."""
    batch_pairs: int = 64
    """Pairs per sampling batch (k·batch_pairs sequences decode together); also the resume unit."""
    temperature: float = 1.0
    """Sampling temperature of the k samples."""
    max_new_tokens: int = 4
    """Tokens a label may take (a longer-winded teacher needs more)."""
    seed: int = 0
    """Batch b samples with seed + b."""
    template: str = TEMPLATE
    """Prompt template (must be the one the teacher was trained with)."""

    def __post_init__(self) -> None:
        if self.k < 1 or self.batch_pairs < 1 or self.temperature <= 0:
            raise ValueError("--k and --batch-pairs must be ≥ 1 and --temperature > 0")


def vote(labels: Sequence[str | None], scheme: LabelScheme) -> dict[str, Any]:
    """Majority label of k parsed samples (None: unparseable), with

    confidence = votes for the winner / k (unparseable samples count against it),
    agreement  = Σ_c n_c (n_c − 1) / (k (k − 1)), the chance that two different samples carry
                 the same parsed label (Fleiss' per-item agreement; 1 when k = 1 and parsed).
    Ties go to the label listed first in the scheme (the more relevant one).

    >>> from agpo.apps.relevance.labels import ESCI
    >>> v = vote(["E", "E", "S", None], ESCI)   # 2·1 / (4·3) = 1/6 of sample pairs agree
    >>> v["label"], v["confidence"], round(v["agreement"], 3)
    ('E', 0.5, 0.167)
    """
    k = len(labels)
    counts = Counter(lab for lab in labels if lab is not None)
    if not counts:
        return {"label": None, "confidence": 0.0, "agreement": 0.0, "votes": {}, "unparsed": k}
    best = max(counts, key=lambda lab: (counts[lab], -scheme.index(lab)))
    same = sum(n * (n - 1) for n in counts.values())
    return {
        "label": best,
        "confidence": counts[best] / k,
        "agreement": same / (k * (k - 1)) if k > 1 else 1.0,
        "votes": dict(counts),
        "unparsed": k - sum(counts.values()),
    }


def _done_rows(out: Path, pairs: Sequence[Pair]) -> int:
    """Rows already annotated; drops a torn last line and checks the keys line up."""
    if not out.exists():
        return 0
    try:
        lines = out.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError:
        raise at(out, None, "not UTF-8 text: not an annotation file; pass a fresh --out") from None
    complete = [ln for ln in lines[:-1] if ln.strip()]  # text after the last newline is torn
    rows = list(iter_jsonl((ln + "\n" for ln in lines[:-1]), out))  # damage mid-file: file:line
    for i, (line, row) in enumerate(rows):
        if i >= len(pairs) or tuple(row.get(k) for k in KEYS) != _key(pairs[i]):
            raise at(out, line, f"keys {tuple(row.get(k) for k in KEYS)}: this file annotates a "
                                "different pool (or order); pass a fresh --out")
    if lines[-1].strip():  # only once the rest is known to be ours
        replace_text(out, "".join(ln + "\n" for ln in complete))
    return len(rows)


def _key(pair: Pair) -> tuple[str, str]:
    return pair.query_id, pair.product_id


def annotate(
    model_dir: str | Path, pairs: Sequence[Pair], out: str | Path, scheme: LabelScheme,
    cfg: AnnotateConfig = AnnotateConfig(), progress: bool = True, max_batches: int | None = None,
) -> list[dict[str, Any]]:
    """Annotate ``pairs`` into ``out`` (jsonl, appended per batch) and return every row.

    Each row keeps the pair's keys (query_id, product_id, and example_id when the source had
    one) plus label, confidence, agreement, votes, unparsed. ``max_batches`` stops early (as
    an interruption would; used to test resume).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agpo.rollout import SamplingConfig, sample

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = _done_rows(out, pairs)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.k * cfg.batch_pairs)
    batches = range(start // cfg.batch_pairs, -(-len(pairs) // cfg.batch_pairs))
    if start % cfg.batch_pairs and start < len(pairs):
        raise at(out, start, f"{start} rows is not a whole number of --batch-pairs "
                             f"{cfg.batch_pairs} batches; resume with the same --batch-pairs")
    with naming(out), out.open("a", encoding="utf-8") as f:
        for n, b in enumerate(_track(batches, progress)):
            if max_batches is not None and n >= max_batches:
                break
            chunk = pairs[b * cfg.batch_pairs:(b + 1) * cfg.batch_pairs]
            prompts = [render(p, cfg.template) for p in chunk for _ in range(cfg.k)]
            temps = torch.full((len(prompts),), cfg.temperature)
            gen = torch.Generator().manual_seed(cfg.seed + b)
            texts = sample(model, tok, prompts, temps, sampling, gen).texts
            for i, p in enumerate(chunk):
                parsed = [scheme.parse(t) for t in texts[i * cfg.k:(i + 1) * cfg.k]]
                row = {"query_id": p.query_id, "product_id": p.product_id}
                if "example_id" in p.meta:
                    row["example_id"] = p.meta["example_id"]
                row.update(vote(parsed, scheme))
                f.write(dumps_finite(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]


def _track(it, enabled: bool):
    if not enabled:
        return it
    from rich.progress import track

    return track(it, description="annotate", transient=True)

