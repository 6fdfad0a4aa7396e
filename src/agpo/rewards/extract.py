"""Final-answer extraction and the cheap, in-process normalisation done before math-verify.

What counts as a response's answer is agpo's grading policy, written out in docs/grading.md;
this module implements its reading of a response: the marked answer (box, "the answer is",
"####"), else the final statement, read for the value it states.

Everything here runs in the caller's process on untrusted model output, so every function is a
linear scan (``rfind``, bounded brace matching, regexes without nested quantifiers): a 1 MB
response costs milliseconds, and nothing is ever evaluated.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
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
    text: str, order: Sequence[str] = EXTRACTORS, max_chars: int = 1000, prompt: str = ""
) -> str | None:
    """The final answer of a response, or ``None`` when it states none.

    Extractors are tried in ``order``: ``boxed`` (the last ``\\boxed{...}``/``\\fbox{...}``, braces
    balanced), ``answer`` (the statement after the last "Answer:" / "the answer is"), ``hash``
    (after the last "####"), ``bare`` (a one-line response that is only an answer), ``final``
    (the final statement: the last sentence that states a number the question does not).
    A statement in plain text is read for the value it states (``read_statement``); one with
    LaTeX is returned as written, for math-verify. Extracted text longer than ``max_chars`` is
    still returned (the verifier reports it as too long); an unbalanced ``\\boxed{`` yields
    nothing from that extractor. ``prompt`` is the question: its noun ("how many eggs") and its
    numbers (a statement of only those restates it) guide ``final``.

    >>> extract_answer("so x = 2.\\n\\\\boxed{\\\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_answer("... #### 1,000")
    '1,000'
    >>> extract_answer("So, the answer is 12 - 5 = 7 dollars.")
    '7'
    >>> extract_answer("Tom buys 5 boxes.\\nSo, there are 30 eggs in 5 boxes.",
    ...                prompt="Tom buys 5 boxes of 6 eggs. How many eggs does he buy?")
    '30'
    """
    located = locate_answer(text, order, max_chars, prompt)
    return located[1] if located is not None else None


def locate_answer(
    text: str, order: Sequence[str] = EXTRACTORS, max_chars: int = 1000, prompt: str = ""
) -> tuple[str, str] | None:
    """``(extractor, answer)`` of the first extractor in ``order`` that finds one, else None;
    ``extract_answer`` without the extractor's name."""
    question = Question.of(prompt)
    for name in order:
        if name in _MARKERS:
            found = _last_marked(text, {n for n in order if n in _MARKERS}, max_chars)
            if found:
                return found
            continue
        answer = _EXTRACT[name](text, max_chars, question)
        if answer:
            return name, answer
    return None


def box_count(text: str) -> int:
    """How many ``\\boxed``/``\\fbox`` a response holds (several boxes may form one answer)."""
    return text.count("\\boxed") + text.count("\\fbox")


def _boxed(text: str, max_chars: int, question: Question) -> str | None:
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


_MARKERS = {"answer": _ANSWER_RE, "hash": re.compile("####")}


def _last_marked(text: str, kinds: set[str], max_chars: int) -> tuple[str, str] | None:
    """The answer after the last marker ("Answer:", "the answer is", "####") that states one:
    "#### 22 / The answer is 22. / #### 20" (three lines) states 20; "So, answer:" closing a
    response, or "the final answer is not within the constraints" after "The final answer is:
    0", states nothing and the marker before it counts."""
    markers = sorted((m.end(), kind) for kind in kinds for m in _MARKERS[kind].finditer(text))
    for end, kind in reversed(markers):
        # A window, not the rest of the text: a response of a million markers stays linear.
        found = _marked(text[end : end + 2 * max_chars + 2])
        if found:
            return kind, found
    return None


def _marked(after: str) -> str | None:
    """The answer a marker ("the answer is", "####") introduces: the rest of its line, read
    for the number it states; a letter ('(C)', 'B) 12'), a word ('Yes') or LaTeX as written."""
    line = after.lstrip().split("\n", 1)[0]
    if has_latex(line) or choice_letter(line) is not None:
        return strip_math(_leading_math(line)) or None
    if not _DIGIT.search(line):  # a word ('Yes', 'Evelyn'); a sentence states nothing
        return strip_math(line) if len(line.split()) <= _WORD_ANSWER else None
    return read_statement(line, marked=True)


def _bare(text: str, max_chars: int, question: Question) -> str | None:
    s = text.strip()
    if not s or "\n" in s:
        return None
    if not has_latex(s) and _PROSE.search(s) and _DIGIT.search(s):
        return None  # a sentence stating a number: the final statement's reading
    return strip_math(s) or None  # an answer: '45', '89 - 44', '[1, 3]', 'Yes'


def _final(text: str, max_chars: int, question: Question) -> str | None:
    statement = final_statement(text, question)
    if statement is None:
        return None
    if has_latex(statement):
        return statement  # math-verify reads it, within the response
    return read_statement(statement, noun=question.noun)


_EXTRACT = {"boxed": _boxed, "bare": _bare, "final": _final}  # and _MARKERS


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


# --- Reading a statement in plain text --------------------------------------------------------
#
# A small model states its answer in prose ("So, Sara has 89 - 44 = 45 stickers left.",
# "84 + 30 equals 114.", "So, there are 30 eggs in 5 boxes."). These regexes read such a
# statement the way a person does; they are linear (no nested quantifier can match the same
# text two ways), so hostile text costs time proportional to its length.

_NUM = r"(?<![A-Za-z_\d])[-−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?%?"  # not in "XDY2K"
_OP = r"(?:\s*[-−+*/×÷^]\s*|\s+x\s+)"  # "29 x 19" is a product; "5x" is not
_TERM = rf"\(?{_NUM}\)?"
_EXPR = rf"{_TERM}(?:{_OP}{_TERM})*"
_CHAIN = re.compile(rf"{_EXPR}(?:\s*=\s*{_EXPR})*")
_NUMBER = re.compile(_NUM)
# "84 + 30 equals 114", "the answer is 88 + 70, which is 158", "81 - 13 is 68": relation words
# between a value and a number state the number, as '=' does.
_RELATION = re.compile(
    r"(?<=[\d%)])\s*(?:,\s*)?(?:which\s+)?(?:is\s+equal\s+to|equals?|is|are|gives(?:\s+us)?|makes|"
    r"results\s+in|yields)\s+(?=[-−]?\d)", re.IGNORECASE)
# "$18" in prose is money, not an opening math delimiter ("$5$" is math).
_CURRENCY = re.compile(r"(?<![\\$])\$(?=\d[\d,]*(?:\.\d+)?(?![\d$,]))")
_LATEX = re.compile(r"\\[a-zA-Z]+|\\[(\[]|(?<!\\)\$")
_HEDGE = re.compile(rf"\s*(?:,\s*)?(?:or|and/or)\s+({_NUM})", re.IGNORECASE)
_DECORATION = re.compile(r"\*\*|[\"“”]")
_DIGIT = re.compile(r"\d")
_WORD_ANSWER = 3  # the most words an answer without digits has ('the empty set')
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_LIST_MARKER = re.compile(r"(?im)^[ \t]*(?:(?:step[ \t]*)?\d+[ \t]*[.):]|[-*•])[ \t]+")
# A word of prose (not a function name): "It is 20." is a sentence, "sqrt(2)" or "[1, 3]" an answer.
_PROSE = re.compile(r"(?<![\\a-zA-Z])(?!(?:sqrt|pi|sin|cos|tan|cot|sec|csc|log|ln|exp|infty|inf|oo|"
                    r"mod|gcd|lcm|max|min)\b)[A-Za-z]{2,}")
_HOW_MANY = re.compile(r"(?i)\bhow\s+many\s+([a-z]+)")
_FINAL_TAIL = 20_000  # the final statement is looked for in the last this many characters


@dataclass(frozen=True)
class Question:
    """What the prompt tells the reader of an answer: the noun it asks to count ("how many
    eggs") and the numbers it gives (a statement of only those restates the question)."""

    noun: str | None
    numbers: frozenset[Decimal]

    @staticmethod
    @functools.lru_cache(maxsize=1024)  # one problem's samples bring the same prompt again
    def of(prompt: str) -> Question:
        asked = list(_HOW_MANY.finditer(prompt))
        return Question(asked[-1].group(1).lower() if asked else None, numbers_in(prompt))


def has_latex(text: str) -> bool:
    """Whether ``text`` holds LaTeX (a command, ``\\(``, ``\\[`` or a ``$`` that is not money),
    which math-verify reads, rather than plain text, which ``read_statement`` reads."""
    return _LATEX.search(_CURRENCY.sub("", text)) is not None


_MATH_DELIMITER = re.compile(r"(?<!\\)\$|\\\(|\\\[")  # $, \( or \[ (an escaped \$ is money)


def math_delimited(text: str) -> bool:
    """Whether ``text`` opens inline or display math (``$``, ``\\(``, ``\\[``; "$18" in prose is
    money), which math-verify's LaTeX extraction looks for."""
    return _MATH_DELIMITER.search(_CURRENCY.sub("", text)) is not None


def numbers_in(text: str) -> frozenset[Decimal]:
    """The values of the plain numbers written in ``text`` ('1,000' is one thousand)."""
    out = set()
    for m in _NUMBER.finditer(text.replace("−", "-")):
        try:
            out.add(Decimal(m.group(0).rstrip("%").replace(",", "")))
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            pass
    return frozenset(out)


def _plain(statement: str) -> str:
    s = _DECORATION.sub("", _CURRENCY.sub("", statement))
    s = s.replace("−", "-").replace("×", "*").replace("÷", "/")
    return _RELATION.sub(" = ", s)


_RELATION_SIGN = re.compile(r"=|\\approx|≈")
# What fills a blank rather than states a value: spacing, dots, boxes, a \text wrapper (its
# content stays and is judged), an underline to write on.
_PLACEHOLDER = re.compile(r"\\(?:[lcvd]?dots|square|Box|blacksquare|q?quad|[hv]space\*?\{[^{}]*\}|phantom|"
                          r"underline|overline|text(?:bf|rm)?|mathrm|mbox|boxed|fbox|[,;:! _])")
_ALNUM = re.compile(r"[A-Za-z0-9]")


def _states_a_value(side: str) -> bool:
    """Whether a relation's side holds a value: a digit or a letter once placeholders are
    dropped. '?', '…', '___', '\\ldots', '\\text{?}', '\\square' or an emoji state nothing."""
    return _ALNUM.search(_PLACEHOLDER.sub("", side)) is not None


def _last_side(chain: str) -> str:
    """The value a relation states: 'x = 89 - 44 = 45' → '45'. A side that states nothing is
    no value: '89 - 44 =' and '89 - 44 = ?' state no more than '89 - 44'; '?' alone states
    nothing (''). Unmatched parentheses of a cut expression are dropped."""
    sides = [s.strip() for s in _RELATION_SIGN.split(chain)]
    side = next((s for s in reversed(sides) if _states_a_value(s)), "")
    if side.count("(") != side.count(")"):
        side = side.strip("()").strip()
    return side


def read_statement(statement: str, *, noun: str | None = None, marked: bool = False) -> str | None:
    """The value a plain-text statement states, or None when it states no number.

    - ``marked`` (the statement follows "the answer is" / "####"): a value it opens with is the
      answer: "15, which is the result of 88 + 70" states 15; "27 dollars" states 27.
    - a relation states its last side: "So, Sara has 89 - 44 = 45 stickers left." states 45,
      "84 + 30 equals 114." states 114 (the last relation in the statement counts).
    - the question's noun: "So, there are 30 eggs in 5 boxes." states 30 when asked how many
      eggs (the last number counting the noun).
    - otherwise the last number or expression ("It is 20." states 20).
    - alternatives ("12 or 15") state both, as a list: a single gold never equals it.

    An expression without a result ("89 - 44") is returned as it stands: the verifier never
    credits one where the task asks for a number.
    """
    s = _plain(statement)
    chains = list(_CHAIN.finditer(s))
    if not chains:
        return None
    chosen = None
    if marked and not s[: chains[0].start()].strip(" \t:'(*"):
        chosen = chains[0]
    if chosen is None:
        chosen = next((c for c in reversed(chains) if "=" in c.group(0)), None)
    if chosen is None and noun:
        counted = list(_counting(noun).finditer(s))
        if counted:
            value = counted[-1]
            return _hedged(s, value.end(1), value.group(1))
    if chosen is None:
        chosen = chains[-1]
    return _hedged(s, chosen.end(), _last_side(chosen.group(0)))


def _hedged(s: str, end: int, answer: str) -> str:
    other = _HEDGE.match(s, end)
    return f"{answer}, {other.group(1)}" if other else answer


@functools.lru_cache(maxsize=256)
def _counting(noun: str) -> re.Pattern[str]:
    """A number counting ``noun`` ('30 eggs', '48 more coins', '1 apple')."""
    forms = {noun, noun[:-1] if noun.endswith("s") else noun,
             noun[:-2] if noun.endswith("es") else noun}
    alternation = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return re.compile(rf"({_NUM})\s+(?:[A-Za-z]+\s+){{0,2}}?(?:{alternation})\b", re.IGNORECASE)


def final_statement(text: str, question: Question) -> str | None:
    """The last sentence of ``text`` that states a number the question does not give (list
    markers such as '2.' or 'Step 3:' are not numbers), or None.

    A sentence made only of the question's numbers ("Sara has 89 stickers and gives away 44.")
    restates the question: the statement before it is the answer, if any.
    """
    body = _LIST_MARKER.sub("", text[-_FINAL_TAIL:])
    for sentence in reversed(_SENTENCES.split(body)):
        found = numbers_in(_CURRENCY.sub("", sentence))
        if found and not found <= question.numbers:
            return sentence.strip()
    return None


# --- What a number-valued task never credits ---------------------------------------------------

_UNITS = re.compile(r"\\(?:text|mbox|mathrm|textbf)\{[^{}]*\}|\^\{?\\circ\}?|\\circ|°"
                    r"|(?:percentage|percent|pct)\b")
_UNDECORATE = re.compile(r"\\[$%,!; ]|\\left|\\right|[$%\s]")
_DECIMAL = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"
_FRAC_PART = r"(?:\{[-+]?\d+\}|\d)"
_FRACTION = rf"[-+]?\d+/\d+|[-+]?\d*\\[dtc]?frac{_FRAC_PART}{_FRAC_PART}"  # 3/4, \frac34, 3\frac12
_SCIENTIFIC = rf"(?:(?:{_DECIMAL})(?:\\times|\\cdot|\*|×))?10\^(?:\{{[-+]?\d+\}}|[-+]?\d)"
_DECIMAL_RE = re.compile(_DECIMAL)
_GOLD_NUMBER_RE = re.compile(rf"{_DECIMAL}|{_FRACTION}|{_SCIENTIFIC}")
# An answer may wear parentheses, or a decimal comma ("1000,99": evaluated, whatever its value).
_NUMERAL_RE = re.compile(rf"\(?(?:{_DECIMAL}|{_SCIENTIFIC}|\d+,\d+)\)?")
_RATIONAL_RE = re.compile(rf"\(?(?:{_DECIMAL}|{_FRACTION}|{_SCIENTIFIC}|\d+,\d+)\)?")
_OPERATION = re.compile(r"(?<=[\w)\].])[-+*/^]|\\(?:frac|sqrt|binom|times|cdot|div|sin|cos|tan|log|ln|exp)|!")
_SQUASH = re.compile(r"\s+|\$|\\left|\\right|\\[!,;]|[{}]")


def _undecorated(answer: str) -> str:
    s = _UNITS.sub("", strip_math(answer).replace("{,}", ","))
    return _UNDECORATE.sub("", s)


def number_kind(gold: str) -> str | None:
    """'integer' or 'number' when the gold answer is a number (units, currency, '%' and
    thousands separators aside), else None: the task then asks for a number."""
    s = _undecorated(gold)
    if _DECIMAL_RE.fullmatch(s):
        whole = "." not in s or s.split(".", 1)[1].strip("0") == ""
        return "integer" if whole and "%" not in gold else "number"
    return "number" if _GOLD_NUMBER_RE.fullmatch(s) else None


def is_numeral(answer: str, fractions: bool = True) -> bool:
    """Whether ``answer`` is a number written out: '45', '-3.5', '1,000', '27 \\text{ dollars}',
    '1 \\times 10^{3}' and, with ``fractions``, '3/4' or '\\frac{3}{4}'. An expression ('89 - 44',
    '74 \\times 5', '\\sqrt{16}') is not; nor, without ``fractions``, an integer written as a
    division ('\\frac{90}{2}')."""
    pattern = _RATIONAL_RE if fractions else _NUMERAL_RE
    return pattern.fullmatch(_undecorated(_last_side(answer))) is not None


def _squash(s: str) -> str:
    s = s.replace("\\times", "*").replace("\\cdot", "*").replace("×", "*").replace("\\div", "/")
    s = s.replace("÷", "/").replace("−", "-").replace("dfrac", "frac").replace("tfrac", "frac")
    return _SQUASH.sub("", s.replace("**", "^"))


def unearned(answer: str, gold: str, prompt: str) -> str | None:
    """Why ``answer`` earns nothing whatever its value, or None.

    - 'restated': it is an expression the prompt already writes ('89 - 44' for "What is
      89 - 44?", '\\sqrt{8}' for "Simplify \\sqrt{8}"): copying the question is no answer,
      however a symbolic checker evaluates it.
    - 'unevaluated': the gold is a number and the answer is not one ('74 * 5',
      '\\frac{90}{2}' for 45): the task asked for the result.
    - 'wrong': the gold is a number and the answer is a word or a symbol ('x', 'Yes').
    - 'no_answer': the answer states nothing ('?', '= …').
    A relation is judged by its last side that states a value ('89 - 44 = 45' states 45,
    '89 - 44 = ?' states '89 - 44').
    """
    value = _last_side(answer)
    squashed = _squash(value)
    if (squashed and _OPERATION.search(squashed) and squashed in _squashed(prompt)
            and squashed != _squash(strip_math(gold))):
        return "restated"
    kind = number_kind(gold)
    if kind is None or is_numeral(value, fractions=kind != "integer"):
        return None
    # A list of numbers ("12, 15") is evaluated, and simply not the gold; a list that holds an
    # expression ("89 - 44, 89 - 44") is not.
    items = [v for v in _COMMA_SPACE.split(value)] if ", " in value else [value]
    if len(items) > 1 and all(is_numeral(v, fractions=kind != "integer") for v in items):
        return None
    if not value:
        return "no_answer"
    # Never left to math-verify: it reads past what it cannot parse ("72 + 49 = 🔍" was 121).
    return "unevaluated" if _DECIMAL_RE.search(value) else "wrong"


@functools.lru_cache(maxsize=1024)
def _squashed(prompt: str) -> str:
    # One problem's samples bring the same prompt again and again.
    return _squash(prompt)
