"""One generic registry for every family of named components (advantage estimators, objectives,
aggregations, KL estimators, verifiers, tasks, ...).

Every entry of a family has the same call signature; a family declares it with a Protocol and the
registry checks arity at registration time, so adding a method is one registered function and
never an edit of the training loop.

A family may also declare a properties type (a frozen dataclass): then every entry is registered
with an instance of it, and lists of entries that share a property ("the binary-only estimators")
are queries of the registry (``where``), never hand-kept tuples that drift when a method is added.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """A name → callable map for one family.

    >>> ADV = Registry("advantage estimator")
    >>> @ADV.register("zero")
    ... def zero(scores, cfg): ...
    >>> ADV.get("nope")
    Traceback (most recent call last):
    KeyError: "unknown advantage estimator 'nope'; valid names: zero"

    With a properties type, each entry carries its properties and lists are queries:

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Props:
    ...     binary_only: bool
    >>> EST = Registry("estimator", props=Props)
    >>> @EST.register("a", Props(binary_only=True))
    ... def a(scores, cfg): ...
    >>> @EST.register("b", Props(binary_only=False))
    ... def b(scores, cfg): ...
    >>> EST.where(binary_only=True)
    ['a']
    """

    def __init__(
        self, family: str, protocol: type | None = None, props: type | None = None
    ) -> None:
        self.family = family
        self.protocol = protocol
        self.props_type = props
        self._entries: dict[str, F] = {}
        self._props: dict[str, Any] = {}

    def register(self, name: str, props: Any = None) -> Callable[[F], F]:
        """Decorator: register ``fn`` under ``name`` (names are unique within a family).

        ``props`` is required, and must be an instance of the family's properties type, exactly
        when the family declares one; a family without one takes no properties.
        """
        if self.props_type is None and props is not None:
            raise TypeError(f"{self.family} entries carry no properties; got {props!r}")
        if self.props_type is not None and not isinstance(props, self.props_type):
            raise TypeError(
                f"{self.family} {name!r} must be registered with its properties, a "
                f"{self.props_type.__name__}; got {props!r}"
            )

        def deco(fn: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.family} {name!r} is already registered")
            if self.protocol is not None:
                _check_signature(self.family, name, fn, self.protocol)
            self._entries[name] = fn
            if props is not None:
                self._props[name] = props
            return fn

        return deco

    def props(self, name: str) -> Any:
        """The properties ``name`` was registered with (unknown names fail as in ``get``)."""
        self.get(name)
        if self.props_type is None:
            raise TypeError(f"{self.family} entries carry no properties")
        return self._props[name]

    def where(self, **values: object) -> list[str]:
        """Sorted names whose properties have every given value: ``where(binary_only=True)``."""
        if self.props_type is None:
            raise TypeError(f"{self.family} entries carry no properties")
        fields = {f.name for f in dataclasses.fields(self.props_type)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise KeyError(
                f"unknown {self.family} propert{'y' if len(unknown) == 1 else 'ies'} "
                f"{', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
            )
        return [
            name
            for name in self.names()
            if all(getattr(self._props[name], k) == v for k, v in values.items())
        ]

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
