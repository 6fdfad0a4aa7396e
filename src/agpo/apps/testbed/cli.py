"""``agpo testbed build`` (build / cache the base model) and ``agpo testbed evidence`` (the
testbed's study of ``agpo evidence``: a base model pretrained per seed, the S niche reported)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import tyro

from agpo.models.testbed import Recipe

USAGE = "usage: agpo testbed {build,evidence} [flags]   (agpo testbed build --help)"


@dataclass(frozen=True)
class BuildConfig:
    """agpo testbed build: pretrain the testbed base model (or find it in the cache)."""

    seed: int = 0
    """Pretraining seed (same seed and recipe → same weights)."""
    task: str = Recipe().task
    """Testbed task of the corpus: testbed_add (answer only) or testbed_add_steps (worked
    column sums; train on it with --model.path testbed:testbed_add_steps)."""
    steps: int = Recipe().steps
    """Pretraining steps."""
    force: bool = False
    """Rebuild even when the cache holds this recipe."""


def build_main(argv: list[str]) -> int:
    import torch
    from rich.progress import Progress

    from agpo.models.testbed import build_base_model

    cfg = tyro.cli(BuildConfig, args=argv, prog="agpo testbed build")
    torch.set_num_threads(1)
    recipe = replace(Recipe(), task=cfg.task, steps=cfg.steps)
    with Progress() as bar:
        task = bar.add_task("pretrain", total=recipe.steps)
        path = build_base_model(cfg.seed, recipe, force=cfg.force,
                                progress=lambda s, _loss: bar.update(task, completed=s))
        bar.update(task, completed=recipe.steps)
    print(path)
    return 0


def evidence_main(argv: list[str]) -> int:
    from agpo.apps.testbed.evidence import EvidenceConfig, run_evidence

    run_evidence(tyro.cli(EvidenceConfig, args=argv, prog="agpo testbed evidence"))
    return 0


def main(argv: list[str]) -> int:
    commands = {"build": build_main, "evidence": evidence_main}
    if not argv or argv[0] not in commands:
        print(USAGE)
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    return commands[argv[0]](argv[1:])
