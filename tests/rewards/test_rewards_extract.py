"""Final-answer extraction: hand cases, then properties over generated text."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.rewards import extract_answer
from agpo.rewards.extract import choice_letter, normalise, plain_decimal

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
