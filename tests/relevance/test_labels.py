"""Label schemes: raw dataset values, and labels read back from free model text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agpo.apps.relevance.labels import ESCI, GRADED, SCHEMES, THREE_LEVEL, get_scheme


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("E", "E"),
        (" label: I", "I"),  # one-letter code alone after the marker
        ("Label: Complement", "C"),
        ("The item is a phone case, so the answer: substitute.", "S"),
        ("exact? no - substitute", "S"),  # last mention wins
        ("I think it is exact", "E"),  # the pronoun I is not the label I
        ("irrelevant at first sight; label: Exact", "E"),  # the marker overrides earlier text
        ("no idea", None),
        ("", None),
    ],
)
def test_esci_parse(text: str, want: str | None) -> None:
    assert ESCI.parse(text) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [("relevance: 4/5", "4"), ("I'd say 2 out of 5", "2"), ("rating 15", None), ("3", "3"),
     ("clearly exact", "5")],
)
def test_graded_parse(text: str, want: str | None) -> None:
    assert GRADED.parse(text) == want


def test_normalize_raw_values() -> None:
    assert ESCI.normalize("E") == "E" and ESCI.normalize("exact") == "E"
    assert ESCI.normalize("Partial") is None  # WANDS' Partial has no single ESCI class
    assert THREE_LEVEL.normalize("S") == "partial" and THREE_LEVEL.normalize("C") == "partial"
    assert GRADED.normalize("5.0") == "5"  # a csv round trip of a grade
    assert GRADED.normalize(None) is None
    assert GRADED.ordinal_distance("5", "2") == 3
    with pytest.raises(KeyError, match="valid: 3level, esci, graded"):
        get_scheme("nope")


_FILLER = st.lists(st.sampled_from(["the", "item", "query", "is", "a", "shoe", "red", "maybe"]),
                   max_size=8).map(" ".join)


@settings(deadline=None, derandomize=True, max_examples=60)
@given(scheme=st.sampled_from(sorted(SCHEMES)), data=st.data(), filler=_FILLER)
def test_marker_then_name_round_trips(scheme: str, data: st.DataObject, filler: str) -> None:
    s = SCHEMES[scheme]
    label = data.draw(st.sampled_from(s.labels))
    assert s.parse(f"{filler}. Label: {s.names[label]}") == label
