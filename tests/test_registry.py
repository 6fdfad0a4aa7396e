"""The one Registry: signatures checked at registration, unknown names listed, properties as
queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pytest

from agpo.registry import Registry


class Fn(Protocol):
    def __call__(self, scores: object, cfg: object) -> object: ...


@dataclass(frozen=True)
class Props:
    binary_only: bool
    zero_sum: bool


def _family() -> Registry:
    reg: Registry = Registry("estimator", Fn, Props)
    reg.register("b", Props(binary_only=True, zero_sum=False))(lambda scores, cfg: 1)
    reg.register("a", Props(binary_only=False, zero_sum=True))(lambda scores, cfg: 2)
    reg.register("c", Props(binary_only=True, zero_sum=True))(lambda scores, cfg: 3)
    return reg


def test_where_lists_sorted_names_with_every_given_value():
    reg = _family()
    assert reg.where(binary_only=True) == ["b", "c"]
    assert reg.where(binary_only=True, zero_sum=True) == ["c"]
    assert reg.where() == ["a", "b", "c"]
    assert reg.props("a") == Props(binary_only=False, zero_sum=True)


def test_unknown_names_and_properties_list_the_valid_ones():
    reg = _family()
    with pytest.raises(KeyError, match="unknown estimator 'z'; valid names: a, b, c"):
        reg.get("z")
    with pytest.raises(KeyError, match="unknown estimator 'z'; valid names: a, b, c"):
        reg.props("z")
    with pytest.raises(KeyError, match="binary; valid: binary_only, zero_sum"):
        reg.where(binary=True)


def test_a_family_with_properties_requires_them_and_one_without_refuses_them():
    reg = _family()
    with pytest.raises(TypeError, match="'d' must be registered with its properties, a Props"):
        reg.register("d")
    plain: Registry = Registry("objective", Fn)
    with pytest.raises(TypeError, match="carry no properties"):
        plain.register("x", Props(binary_only=True, zero_sum=True))
    plain.register("x")(lambda scores, cfg: 0)
    with pytest.raises(TypeError, match="carry no properties"):
        plain.where(binary_only=True)


def test_signature_and_duplicates_are_checked_at_registration():
    reg = _family()
    with pytest.raises(TypeError, match=r"expects \(scores, cfg\)"):
        reg.register("d", Props(binary_only=True, zero_sum=True))(lambda scores: 0)
    with pytest.raises(ValueError, match="'a' is already registered"):
        reg.register("a", Props(binary_only=True, zero_sum=True))(lambda scores, cfg: 0)
