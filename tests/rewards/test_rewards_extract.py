"""Final-answer extraction: hand cases, then properties over generated text."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.rewards import extract_answer
from agpo.rewards.extract import choice_letter, normalise, number_kind, plain_decimal, unearned

SETTINGS = settings(deadline=None, derandomize=True, max_examples=200)


@pytest.mark.parametrize(
    "text, answer",
    [
        ("so \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{2}", "2"),  # the last box
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not close the box
        ("\\fbox{7}", "7"),
        ("\\boxed 5.", "5"),
        ("Answer: 41\nno wait. Answer: 42", "42"),
        ("The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
        ("the answer is \\(x=3\\) because", "x=3"),
        ("Answer:\n  17", "17"),
        ("#### 1,000", "1,000"),
        ("  -3.5  ", "-3.5"),
        ("$x^2$", "x^2"),
        ("no answer here\nreally", None),
        ("so\n\\boxed{unclosed", None),
        ("", None),
    ],
)
def test_extract_cases(text: str, answer: str | None) -> None:
    assert extract_answer(text) == answer


def test_priority_is_configurable() -> None:
    text = "Answer: 3\nchecking: \\boxed{4}"
    assert extract_answer(text) == "4"
    assert extract_answer(text, order=("answer", "boxed")) == "3"
    assert extract_answer("#### 9", order=("boxed",)) is None
    assert extract_answer("\\boxed{unclosed", order=("boxed",)) is None
    assert extract_answer("\\boxed{unclosed") == "\\boxed{unclosed"  # the bare fallback


@pytest.mark.parametrize(
    "answer, letter",
    [("C", "C"), ("(C)", "C"), ("\\text{(C)}", "C"), ("B) 12", "B"), ("e", None), ("F", None),
     ("CD", None)],
)
def test_choice_letter(answer: str, letter: str | None) -> None:
    assert choice_letter(answer) == letter


@pytest.mark.parametrize(
    "answer, value",
    [("025", Decimal(25)), ("27.0", Decimal(27)), ("1,000", Decimal(1000)),
     ("1{,}000", Decimal(1000)),
     ("-3.5", Decimal("-3.5")), ("0.1234567", None), ("1,2", None), ("1/2", None), ("12,34", None)],
)
def test_plain_decimal(answer: str, value: Decimal | None) -> None:
    assert plain_decimal(answer) == value


# Answers without braces, backslashes or newlines: what a box can hold verbatim.
box_content = st.text(
    st.characters(blacklist_characters="{}\\\n\r$", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip().rstrip(".").strip() != "")


@SETTINGS
@given(prefix=st.text(max_size=200), answer=box_content)
def test_last_box_is_found_after_any_prefix(prefix: str, answer: str) -> None:
    text = prefix.replace("\\", "") + "\\boxed{" + answer + "}"
    assert extract_answer(text, order=("boxed",)) == answer.strip()


@SETTINGS
@given(text=st.text(alphabet=st.sampled_from(list("{}\\boxed$#Answer: \n()[]1x")), max_size=300))
def test_never_raises_on_noise(text: str) -> None:
    out = extract_answer(text)
    assert out is None or isinstance(out, str)


@SETTINGS
@given(answer=box_content)
def test_normalise_is_idempotent_and_ignores_spacing_and_dollars(answer: str) -> None:
    key = normalise(answer)
    assert normalise(key) == key
    assert normalise(f"$ {answer} $") == key


EGGS = "Tom buys 5 boxes with 6 eggs in each box. How many eggs does Tom buy?"


@pytest.mark.parametrize(
    "text, prompt, answer",
    [
        # the table of docs/grading.md, "Reading a statement"
        ("The answer is 27 dollars.", "", "27"),
        ("The answer is 15, which is the result of 88 + 70, where the 8 is the carryover.", "", "15"),
        ("The answer is 12 - 5 = 7 dollars.", "", "7"),
        ("So, Sara has 89 - 44 = 45 stickers left.", "", "45"),
        ("84 + 30 equals 114.", "", "114"),
        ("83 - 63 is 20.", "", "20"),
        ("Tom buys 5 boxes.\nSo, there are 30 eggs in 5 boxes.", EGGS, "30"),
        ("It is 20.", "", "20"),
        ("The result is 20", "", "20"),
        ("The answer is 12 or 15.", "", "12, 15"),
        ("She makes 9 * 2 = $18 every day.", "", "18"),
        # the marker that states something, the last of them, whichever kind
        ("#### 4\nThe answer is 4.\n#### 22\nThe answer is 22.\n#### 20", "", "20"),
        ("The answer is 22.\n\nSo, answer:", "", "22"),
        ("The final answer is: 0\n\nThe final answer is not within the constraints.", "", "0"),
        ("The answer is 88 + 70, which is 158.", "", "158"),
        # the final statement: the last sentence stating a number the question does not give
        ("84 + 30 = 114\n\nI added the numbers. In this case, I used 'operations'.", "", "114"),
        ("Step 1: 66 - 57 = 5\n\nStep 2: 5 - 1 = 4\n", "", "4"),
        ("Sara has 45 left.\nSara had 89 stickers and gave away 44.",
         "Sara has 89 stickers and gives away 44. How many are left?", "45"),
        ("Sara has 89 stickers and gives away 44.",
         "Sara has 89 stickers and gives away 44. How many are left?", None),
        ("13 is the result of 81 - 13.", "What is 81 - 13?", None),
        # numbers glued to letters are not numbers; a bare answer stays whole
        ("AZYUK2A", "", None),
        ("[1, 3]", "", "[1, 3]"),
        ("89 - 44", "", "89 - 44"),
    ],
)
def test_statements_are_read_as_a_person_reads_them(text: str, prompt: str, answer: str | None) -> None:
    assert extract_answer(text, prompt=prompt) == answer


def test_without_final_only_marked_answers_count() -> None:
    order = ("boxed", "answer", "hash", "bare")
    assert extract_answer("So, there are 30 eggs in 5 boxes.", order, prompt=EGGS) is None
    assert extract_answer("So, the answer is 30.", order) == "30"


@pytest.mark.parametrize("answer, gold, prompt, why", [
    ("74 * 5", "370", "What is 74 * 5?", "restated"),
    ("74 \\times 5", "370", "What is 74 * 5?", "restated"),
    ("89 - 44 =", "45", "What is 89 - 44?", "restated"),
    ("\\sqrt{8}", "2\\sqrt{2}", "Simplify $\\sqrt{8}$.", "restated"),
    ("\\sqrt{8}", "\\sqrt{8}", "Is $\\sqrt{8}$ rational?", None),  # literally the gold
    ("5 \\cdot 6", "30", "", "unevaluated"),
    ("\\frac{90}{2}", "45", "", "unevaluated"),
    ("3!", "6", "", "unevaluated"),
    ("\\sqrt{16}", "4", "", "unevaluated"),
    ("89 - 44, 89 - 44", "45", "", "unevaluated"),
    ("x = 89 - 44 = 45", "45", "What is 89 - 44?", None),
    # a blank where the result goes states nothing: the relation states the question's expression
    ("72 + 49 = ?", "121", "What is 72 + 49?", "restated"),
    ("72 + 49 = 🔍🔍", "121", "What is 72 + 49?", "restated"),
    ("72 + 49 = \\ldots", "121", "What is 72 + 49?", "restated"),
    ("72 + 49 = \\text{?}", "121", "What is 72 + 49?", "restated"),
    ("72+49=\\square", "121", "What is 72 + 49?", "restated"),
    ("74 * 5 = ___", "370", "What is 74 * 5?", "restated"),
    ("?", "121", "What is 72 + 49?", "no_answer"),
    ("x", "121", "", "wrong"),  # a symbol or a word where a number is asked
    ("Yes", "121", "", "wrong"),
    ("72 + 49 = x", "121", "What is 72 + 49?", "wrong"),
    ("12, 15", "12", "", None),  # a list of numbers: evaluated, and simply not the gold
    ("\\frac{2}{4}", "\\frac{1}{2}", "", None),
    ("3\\frac{1}{2}", "3.5", "", None),
    ("1 \\times 10^{2}", "100", "", None),
    ("28 percent", "28\\%", "", None),
    ("\\left( \\frac{1}{3} \\right)", "1/3", "", None),
    ("1000,99", "1000.99", "", None),
    ("(x+1)^2", "x^2+2x+1", "", None),  # no number gold, not in the prompt: math-verify decides
])
def test_what_is_never_credited(answer: str, gold: str, prompt: str, why: str | None) -> None:
    assert unearned(answer, gold, prompt) == why


@pytest.mark.parametrize("gold, kind", [
    ("45", "integer"), ("1,000", "integer"), ("025", "integer"), ("27.0", "integer"),
    ("10\\text{ units}", "integer"), ("\\$32", "integer"), ("50\\%", "number"), ("0.5", "number"),
    ("\\frac{1}{2}", "number"), ("x = 2", None), ("(1,3)", None), ("1, 2", None), ("C", None),
])
def test_number_kind_of_a_gold(gold: str, kind: str | None) -> None:
    assert number_kind(gold) == kind
