"""The teacher: a generative LM that reads a query and an item and writes a relevance label,
trained with agpo's RL trainer where the reward is agreement with the human label (the
``label`` verifier: exact, or graded by ordinal distance).

For the embedded default the teacher is a tiny Llama over a word-level tokenizer built from the
world's text (``word_tokenizer``; word tokens make prompts about 5× shorter than characters).
``warm_start`` stands in for the pretrained LLM of the paper: next-token pretraining on the
unlabelled catalogue corpus (what an LLM learns from the web), then supervised training on the
labelled pairs with corpus replay (one loop: agpo.train.sft). Measured on the synthetic world
(seed 0, greedy labels, before RL): with the corpus 0.830 agreement with the noise-free labels,
without it 0.789. RL (``train_teacher``) starts from that checkpoint. Users pass a built-in
model (``smollm2-135m-instruct``) or any transformers causal LM folder as the base instead and
skip the warm start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from agpo.apps.relevance.data import Pair
from agpo.apps.relevance.labels import LabelScheme
from agpo.types import TaskItem

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

TEMPLATE = "query: {query}\nitem: {title}\nlabel: "
"""Default prompt, short because the tiny teacher is small. Fields: query, title, description,
bullets, brand, color (missing ones render empty). A real LM wants a template that names the
labels ("Answer with Exact, Substitute, Complement or Irrelevant")."""


def render(pair: Pair, template: str = TEMPLATE) -> str:
    """The teacher's prompt for one pair."""
    fields = {name: pair.item.get(name, "") for name in ("title", "description", "bullets", "brand", "color")}
    return template.format(query=pair.query, **fields)


def to_tasks(pairs: Sequence[Pair], scheme: LabelScheme, template: str = TEMPLATE) -> list[TaskItem]:
    """Labelled pairs as trainer tasks (gold = the canonical label). Unlabelled pairs are left
    out, never given a fake gold."""
    return [
        TaskItem(
            id=f"{p.query_id}|{p.product_id}|{i}",
            prompt=render(p, template),
            gold=p.label,
            meta={"verifier": "label", "scheme": scheme.name},
        )
        for i, p in enumerate(pairs)
        if p.label is not None
    ]


@dataclass(frozen=True)
class WarmStartConfig:
    """The tiny teacher of the embedded default: pretrained on the unlabelled catalogue corpus
    (the stand-in for an LLM's web pretraining), then supervised on the labelled pairs."""

    pretrain_steps: int = 1000
    """Next-token steps on the corpus (0: no corpus pretraining, or no corpus given)."""
    steps: int = 1500
    """Supervised steps on prompt → label + EOS."""
    corpus_share: float = 0.3
    """Share of each supervised batch replayed from the corpus, so the supervised phase does
    not overwrite what pretraining taught."""
    batch_size: int = 32
    """Sequences per step."""
    lr: float = 3e-3
    """AdamW peak learning rate of both phases (warm-up, cosine decay to 0)."""
    hidden: int = 64
    """Width of the tiny Llama."""
    layers: int = 2
    """Transformer layers of the tiny Llama."""
    seed: int = 0
    """Initialisation and batch-order seed."""

    def __post_init__(self) -> None:
        if not 0 <= self.corpus_share < 1:
            raise ValueError(f"--warm.corpus-share {self.corpus_share}: use a share in [0, 1)")


def warm_start(
    pairs: Sequence[Pair], scheme: LabelScheme, out_dir: Path,
    cfg: WarmStartConfig = WarmStartConfig(), template: str = TEMPLATE, progress: bool = True,
    vocab_pairs: Sequence[Pair] | None = None, corpus: Sequence[str] = (),
) -> Path:
    """Pretrain a tiny word-level Llama on ``corpus`` (one document per string), then train it
    to write ``label + EOS`` after the prompt; save a ``from_pretrained`` folder (model +
    tokenizer) in ``out_dir`` and return it.

    ``vocab_pairs`` (default: ``pairs``) and the corpus supply the vocabulary: pass the pool
    too, so the teacher can read the items it will annotate. Without a corpus the supervised
    phase also models the prompt text (``context_weight`` 1), the only text it has.
    """
    from agpo.models.tiny import tiny_llama
    from agpo.train.sft import SFTConfig, sft

    labelled = [p for p in pairs if p.label is not None]
    tok = word_tokenizer([*(render(p, template) for p in (vocab_pairs or pairs)), *corpus], scheme)
    eos = [tok.eos_token_id]
    docs = [([], tok(line)["input_ids"] + eos) for line in corpus if line.strip()]
    examples = [(tok(render(p, template))["input_ids"], tok(p.label)["input_ids"] + eos) for p in labelled]
    longest = max(len(a) + len(b) for a, b in [*examples, *docs])
    model = tiny_llama(len(tok), hidden=cfg.hidden, layers=cfg.layers,
                       max_positions=max(256, longest + 8), seed=cfg.seed)
    phase = partial(SFTConfig, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
    share = cfg.corpus_share if docs else 0.0
    with _bar("warm start", cfg.pretrain_steps * bool(docs) + cfg.steps, progress) as advance:
        if docs:
            sft(model, docs, phase(steps=cfg.pretrain_steps), pad_id=tok.pad_token_id,
                progress=advance)
        weights = [(1 - share) / len(examples)] * len(examples) + [share / max(1, len(docs))] * len(docs)
        sft(model, [*examples, *docs], phase(steps=cfg.steps, context_weight=0.0 if docs else 1.0),
            pad_id=tok.pad_token_id, weights=weights, progress=advance)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def word_tokenizer(texts: Sequence[str], scheme: LabelScheme) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``texts`` plus the scheme's labels (pad/bos/eos/unk first).

    Words split at whitespace and punctuation; decoding joins tokens with spaces, which is
    all a one-word label needs.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from agpo.models.tiny import BOS, EOS, PAD

    vocab = {PAD: 0, BOS: 1, EOS: 2, "<unk>": 3}
    splitter = pre_tokenizers.Whitespace()
    for text in [*texts, *scheme.labels]:
        for word, _ in splitter.pre_tokenize_str(text):
            vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = splitter
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS,
                                   eos_token=EOS, unk_token="<unk>")
    fast.padding_side = "left"
    return fast


@contextmanager
def _bar(label: str, total: int, enabled: bool) -> Iterator[Callable[[int, float], None]]:
    """A rich progress bar over ``total`` steps of consecutive phases; yields the per-step
    callback of ``sft`` (which counts steps from 1 within each phase)."""
    if not enabled:
        yield lambda step, loss: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda step, loss: bar.update(task, advance=1, description=f"{label} (loss {loss:.3f})")


@dataclass(frozen=True)
class TeacherRLConfig:
    """RL of the teacher with agpo's trainer (the knobs the relevance app sets; everything else
    is the trainer's default and can be overridden through ``extra``)."""

    advantage: str = "agpo_asym"
    """Advantage estimator (grpo, agpo_asym, rloo, ...: any registered name)."""
    steps: int = 80
    """RL steps."""
    prompts_per_step: int = 16
    """B: labelled pairs per step."""
    group_size: int = 8
    """G: sampled labels per pair."""
    lr: float = 3e-4
    """Peak learning rate."""
    kl_coef: float = 0.0
    """KL penalty to the warm-start model."""
    label_reward: str = "exact"
    """exact (1/0) or ordinal (1 − distance / (K − 1))."""
    max_new_tokens: int = 4
    """Tokens a label may take (the tiny teacher writes one character + EOS)."""
    seed: int = 0
    """Trainer seed."""


def train_teacher(
    base_dir: Path, tasks: Sequence[TaskItem], scheme: LabelScheme, out_dir: Path,
    cfg: TeacherRLConfig = TeacherRLConfig(), progress: bool = True,
) -> Path:
    """Run agpo's trainer on the labelled tasks from ``base_dir``; returns the final model folder
    (a ``from_pretrained`` folder with its tokenizer)."""
    from agpo.algos.config import AlgoConfig
    from agpo.rewards.config import RewardConfig
    from agpo.rollout.config import SamplingConfig
    from agpo.tasks import write_items
    from agpo.train import train
    from agpo.train.config import (LogConfig, ModelConfig, OptimConfig, RunConfig, TaskConfig,
                                   TrainConfig)

    out_dir = Path(out_dir)
    task_file = write_items(list(tasks), out_dir.parent / f"{out_dir.name}_tasks.jsonl")
    run = RunConfig(
        model=ModelConfig(path=str(base_dir), device="cpu"),
        task=TaskConfig(spec=str(task_file), eval_limit=0),
        rollout=SamplingConfig(max_new_tokens=cfg.max_new_tokens),
        reward=RewardConfig(verifier="label", labels=tuple(scheme.labels), workers=0,
                            label_reward=cfg.label_reward),
        algo=AlgoConfig(advantage=cfg.advantage, kl_coef=cfg.kl_coef),
        optim=OptimConfig(lr=cfg.lr),
        train=TrainConfig(steps=cfg.steps, prompts_per_step=cfg.prompts_per_step,
                          group_size=cfg.group_size, seed=cfg.seed, checkpoint_every=0,
                          keep_checkpoints=1, micro_batch_size=cfg.prompts_per_step * cfg.group_size),
        log=LogConfig(samples_per_step=0, progress=progress),
    )
    run_dir = Path(train(run, out_dir))
    return latest_checkpoint(run_dir)


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest ``checkpoints/step_N`` folder of a run directory (agpo.train.checkpoint's
    finder), or FileNotFoundError."""
    from agpo.train.checkpoint import latest_checkpoint as newest

    found = newest(run_dir)
    if found is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoints/step_N folder")
    return found
