"""Final-answer extraction and the cheap, in-process normalisation done before math-verify.

Everything here runs in the caller's process on untrusted model output, so every function is a
linear scan (``rfind``, bounded brace matching, regexes without nested quantifiers): a 1 MB
response costs milliseconds, and nothing is ever evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from agpo.rewards.config import EXTRACTORS

_ANSWER_RE = re.compile(r"(?i)\b(?:final answer|answer)\b\s*(?:is\b\s*:?|[:=])[ \t]*")
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_PLAIN_DECIMAL_RE = re.compile(r"-?\d+(?:\.(\d+))?")
_CHOICE_RE = re.compile(r"^\(?([A-E])\)?$")
_CHOICE_WRAPPERS = re.compile(r"\\text(?:bf)?\{([^{}]*)\}|\\textbf\{([^{}]*)\}")
_SPACES = re.compile(r"\s+")
_COMMA_SPACE = re.compile(r",\s+")
_FRACTION_RE = re.compile(
    r"(-?)\\[dt]?frac\{(-?\d{1,18})\}\{(-?\d{1,18})\}"  # \frac{a}{b}, \dfrac, \tfrac
    r"|(-?\d{1,18})/(\d{1,18})"  # a/b
    r"|(-?\d{1,18})"  # an integer
)


def extract_answer(
    text: str, order: Sequence[str] = EXTRACTORS, max_chars: int = 1000
) -> str | None:
    """The final answer of a response, or ``None`` when it states none.

    Extractors are tried in ``order``: ``boxed`` (the last ``\\boxed{...}``/``\\fbox{...}``, braces
    balanced), ``answer`` (the rest of the line after the last "Answer:" / "final answer is"),
    ``hash`` (after the last "####"), ``bare`` (a one-line response is itself the answer).
    Extracted text longer than ``max_chars`` is still returned (the verifier reports it as
    too long); an unbalanced ``\\boxed{`` yields nothing from that extractor.

    >>> extract_answer("so x = 2.\\n\\\\boxed{\\\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_answer("... #### 1,000")
    '1,000'
    """
    located = locate_answer(text, order, max_chars)
    return located[1] if located is not None else None


def locate_answer(
    text: str, order: Sequence[str] = EXTRACTORS, max_chars: int = 1000
) -> tuple[str, str] | None:
    """``(extractor, answer)`` of the first extractor in ``order`` that finds one, else None;
    ``extract_answer`` without the extractor's name."""
    for name in order:
        found = _EXTRACT[name](text, max_chars)
        if found:
            return name, found
    return None


def box_count(text: str) -> int:
    """How many ``\\boxed``/``\\fbox`` a response holds (several boxes may form one answer)."""
    return text.count("\\boxed") + text.count("\\fbox")


def _boxed(text: str, max_chars: int) -> str | None:
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    k = start + (6 if text.startswith("\\boxed", start) else 5)
    while k < len(text) and text[k] == " ":
        k += 1
    if k >= len(text) or text[k] != "{":  # "\boxed 5": the next token is the answer
        token = text[k:].split(None, 1)
        return strip_math(token[0]) if token and k > start + 5 else None
    depth, limit = 0, min(len(text), k + max_chars + 2)
    for j in range(k, limit):
        c = text[j]
        if c == "{" and text[j - 1] != "\\":
            depth += 1
        elif c == "}" and text[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[k + 1 : j].strip() or None
    if limit < len(text):
        return text[k + 1 : limit]  # over-long: the verifier reports "too_long"
    return None


def _after_last(text: str, matches: list[re.Match[str]]) -> str | None:
    if not matches:
        return None
    line = text[matches[-1].end() :].lstrip().split("\n", 1)[0]
    return strip_math(_leading_math(line)) or None


def _answer(text: str, max_chars: int) -> str | None:
    return _after_last(text, list(_ANSWER_RE.finditer(text)))


def _hash(text: str, max_chars: int) -> str | None:
    i = text.rfind("####")
    if i < 0:
        return None
    line = text[i + 4 :].lstrip().split("\n", 1)[0]
    return strip_math(_leading_math(line)) or None


def _bare(text: str, max_chars: int) -> str | None:
    s = text.strip()
    if not s or "\n" in s:
        return None
    return strip_math(s) or None


_EXTRACT = {"boxed": _boxed, "answer": _answer, "hash": _hash, "bare": _bare}


def _leading_math(line: str) -> str:
    """'$5$. I hope it is correct.' → '5': a line opening with math keeps only that math."""
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)")):
        if line.startswith(left):
            end = line.find(right, len(left))
            if end > len(left):
                return line[len(left) : end]
    return line


def strip_math(s: str) -> str:
    """Drop math delimiters and closing punctuation around an answer: '$x=2$.' → 'x=2'."""
    s = s.strip().rstrip(".").strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**")):
        if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
            s = s[len(left) : len(s) - len(right)].strip()
    return s.rstrip(".").strip()


def normalise(answer: str) -> str:
    """The cache key form of an answer: math delimiters, spaces and '\\!' spacing removed.

    Only transformations that cannot change the value: two answers with the same key get the
    same verdict from math-verify.
    """
    # A space right after a comma is kept (split on it first): math-verify reads "32,349" and
    # "32,\\! 349" as one number but "32, 349" as two, so dropping it would let one verdict
    # answer for the other through the cache.
    parts = _COMMA_SPACE.split(strip_math(answer))
    return ", ".join(_SPACES.sub("", p.replace("\\!", "").replace("\\left", "").replace(
        "\\right", "").replace("dfrac", "frac")) for p in parts)


def choice_letter(answer: str) -> str | None:
    """A multiple-choice letter A–E from 'B', '(B)', '\\text{(B)}', 'B)' or 'B. 12', else None.

    Only upper-case letters count: a lower-case 'e' or 'a' is a math answer.
    """
    s = _CHOICE_WRAPPERS.sub(lambda m: m.group(1) or m.group(2) or "", strip_math(answer))
    s = s.strip()
    m = _CHOICE_RE.match(s)
    if m:
        return m.group(1)
    if len(s) > 2 and s[0] in "ABCDE" and s[1] in ").:" and s[2] == " ":
        return s[0]
    return None


def plain_decimal(answer: str) -> Decimal | None:
    """The value of a plain number ('025', '27.0', '1,000', '-3.5'), else None.

    Used for an exact in-process fast path: math-verify compares numbers rounded to 6 decimal
    places, so only numbers with at most 6 fractional digits take it (exact equality of those
    equals math-verify's verdict).
    """
    s = strip_math(answer).replace("{,}", ",").replace("\\,", "")
    if not _NUMBER_RE.fullmatch(s):
        return None
    s = s.replace(",", "")
    frac = _PLAIN_DECIMAL_RE.fullmatch(s)
    if frac is None or (frac.group(1) is not None and len(frac.group(1)) > 6):
        return None
    try:
        return Decimal(s)
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        return None


def plain_rational(answer: str) -> Fraction | None:
    """The value of an integer or integer fraction written without a decimal point ('7',
    '-\\frac{3}{4}', '\\dfrac{6}{8}', '3/4'), else None.

    A second exact in-process fast path: math-verify compares two such rationals exactly, so
    Fraction equality is its verdict. Decimals are left out on purpose (math-verify rounds them:
    '1/3' equals '0.333333' there).
    """
    m = _FRACTION_RE.fullmatch(_SPACES.sub("", strip_math(answer)))
    if m is None:
        return None
    sign, num, den, snum, sden, integer = m.groups()
    if integer is not None:
        return Fraction(int(integer))
    num, den = (num, den) if num is not None else (snum, sden)
    if int(den) == 0:
        return None
    value = Fraction(int(num), int(den))
    return -value if sign else value
