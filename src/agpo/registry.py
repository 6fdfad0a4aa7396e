"""One generic registry for every family of named components (advantage estimators, objectives,
aggregations, KL estimators, verifiers, tasks, ...).

Every entry of a family has the same call signature; a family declares it with a Protocol and the
registry checks arity at registration time, so adding a method is one registered function and
never an edit of the training loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """A name → callable map for one family.

    >>> ADV = Registry("advantage estimator")
    >>> @ADV.register("zero")
    ... def zero(scores, cfg): ...
    >>> ADV.get("nope")
    Traceback (most recent call last):
    KeyError: "unknown advantage estimator 'nope'; valid names: zero"
    """

    def __init__(self, family: str, protocol: type | None = None) -> None:
        self.family = family
        self.protocol = protocol
        self._entries: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: register ``fn`` under ``name`` (names are unique within a family)."""

        def deco(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.family} {name!r} is already registered")
            if self.protocol is not None:
                _check_signature(self.family, name, fn, self.protocol)
            self._entries[name] = fn
            return fn

        return deco

    def get(self, name: str) -> F:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.family} {name!r}; valid names: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, F]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def _check_signature(family: str, name: str, fn: Callable[..., object], protocol: type) -> None:
    """Same positional parameter count as the family's Protocol ``__call__`` (minus self)."""
    want = [
        p
        for p in inspect.signature(protocol.__call__).parameters.values()  # type: ignore[operator]
        if p.name != "self"
    ]
    got = list(inspect.signature(fn).parameters.values())
    if [p.kind for p in got] != [p.kind for p in want]:
        raise TypeError(
            f"{family} {name!r} has signature {inspect.signature(fn)}; the family expects "
            f"({', '.join(p.name for p in want)})"
        )
