"""Relevance label schemes: the label sets, how raw dataset labels map onto them, and how a label
is read back from a model's free text.

Three schemes ship:
- ``esci``   Exact / Substitute / Complement / Irrelevant (Amazon Shopping Queries; raw E/S/C/I);
- ``3level`` Exact / Partial / Irrelevant (WANDS); from ESCI: S and C become Partial;
- ``graded`` 1..5 (5 = most relevant); from ESCI: E 5, S 3, C 2, I 1 and from WANDS: Exact 5,
  Partial 3, Irrelevant 1 — a convention, not part of either dataset.
Labels are stored as the scheme's canonical short names and ordered from most to least
relevant, so ``ordinal_distance`` is meaningful for a graded reward.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from collections.abc import Mapping


@dataclass(frozen=True)
class LabelScheme:
    """An ordered label set (most relevant first) with the raw spellings that map onto it."""

    name: str
    labels: tuple[str, ...]
    """Canonical labels, most relevant first (the order defines ordinal distance)."""
    names: Mapping[str, str]
    """Canonical label → human-readable name (used in prompts and reports)."""
    aliases: Mapping[str, str] = field(default_factory=dict)
    """Lower-cased raw spelling → canonical label (dataset values, words a model may write)."""

    def normalize(self, raw: object) -> str | None:
        """The canonical label of a raw dataset value, or ``None`` when it is not one of ours."""
        if raw is None:
            return None
        key = str(raw).strip()
        if key.endswith(".0") and key[:-2].isdigit():  # csv readers turn grade 5 into "5.0"
            key = key[:-2]
        if key in self.labels:
            return key
        return self.aliases.get(key.lower())

    def index(self, label: str) -> int:
        return self.labels.index(label)

    def ordinal_distance(self, a: str, b: str) -> int:
        return abs(self.index(a) - self.index(b))

    def parse(self, text: str) -> str | None:
        """Read one label from free model text; ``None`` when no label is found.

        The last label mentioned after the final ``label:`` / ``answer:`` marker wins; without a
        marker, the last mention in the whole text. Only whole words count ("5" inside "15" is
        not a mention), a grade's scale ("4/5", "4 out of 5") is not a second grade, and a
        one-letter code (E, S, C, I) counts only when it is all there is after the marker — in
        prose "I" is a pronoun.

        >>> ESCI.parse("This is a phone case, not a phone. Label: Complement")
        'C'
        >>> ESCI.parse("exact? no - substitute")
        'S'
        >>> ESCI.parse("I think it is exact")
        'E'
        >>> ESCI.parse(" label: I")
        'I'
        >>> GRADED.parse("relevance 4/5")
        '4'
        """
        parts = _MARKER.split(text)
        tail = parts[-1] if len(parts) > 1 else text
        tail = _SCALE.sub(" ", tail)
        if len(tail.strip()) == 1:
            return self.normalize(tail.strip())
        found = [self.normalize(w) for w in _WORD.findall(tail) if len(w) > 1 or w.isdigit()]
        found = [lab for lab in found if lab is not None]
        return found[-1] if found else None


_MARKER = re.compile(r"(?:label|answer|relevance)\s*[:=]", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z]+|\d+")
_SCALE = re.compile(r"(?:/|\bout of|\bof)\s*(?:5|10|100)\b", re.IGNORECASE)


def _aliases(pairs: Mapping[str, str], names: Mapping[str, str]) -> dict[str, str]:
    out = {k.lower(): v for k, v in pairs.items()}
    out.update({n.lower(): lab for lab, n in names.items()})
    return out


_ESCI_NAMES = {"E": "Exact", "S": "Substitute", "C": "Complement", "I": "Irrelevant"}
ESCI = LabelScheme(
    "esci",
    ("E", "S", "C", "I"),
    _ESCI_NAMES,
    _aliases({"e": "E", "s": "S", "c": "C", "i": "I"}, _ESCI_NAMES),
)

_THREE_NAMES = {"exact": "Exact", "partial": "Partial", "irrelevant": "Irrelevant"}
THREE_LEVEL = LabelScheme(
    "3level",
    ("exact", "partial", "irrelevant"),
    _THREE_NAMES,
    _aliases(
        {"e": "exact", "s": "partial", "c": "partial", "i": "irrelevant", "substitute": "partial",
         "complement": "partial"},
        _THREE_NAMES,
    ),
)

_GRADED_NAMES = {g: g for g in ("5", "4", "3", "2", "1")}
GRADED = LabelScheme(
    "graded",
    ("5", "4", "3", "2", "1"),
    _GRADED_NAMES,
    _aliases(
        {"e": "5", "s": "3", "c": "2", "i": "1", "exact": "5", "substitute": "3",
         "complement": "2", "partial": "3", "irrelevant": "1"},
        _GRADED_NAMES,
    ),
)

SCHEMES: dict[str, LabelScheme] = {s.name: s for s in (ESCI, THREE_LEVEL, GRADED)}


def get_scheme(name: str) -> LabelScheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise KeyError(f"unknown label scheme {name!r}; valid: {', '.join(sorted(SCHEMES))}") from None
