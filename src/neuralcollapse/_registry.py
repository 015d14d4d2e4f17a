"""A small name → factory registry shared by every extensible family.

One registry per family lives in the package that owns it (loss terms in ``losses``, detectors in ``ood``,
backbones in ``models``, data sets in ``data``). Entries register themselves by decorator where they are
defined; the CLI, recipes and ``Objective.parse`` read the registry and never keep a list of their own.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


class Registry(Generic[T]):
    """Maps names (and aliases) to objects, usually classes or factory functions.

    Lookup is case-insensitive and treats ``-`` and ``_`` alike. An unknown name raises ``ValueError``
    listing the valid names and the closest match.

    Example:
        >>> reg = Registry("colour")
        >>> @reg.register("red", aliases=("rouge",))
        ... def make_red():
        ...     return "#f00"
        >>> reg.create("Rouge")
        '#f00'
        >>> reg.names()
        ['red']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str | None = None, *, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        """Decorator filing the decorated object under ``name`` (default: its ``__name__``)."""

        def decorator(obj: T) -> T:
            self.add(name if name is not None else obj.__name__, obj, aliases=aliases)  # type: ignore[attr-defined]
            return obj

        return decorator

    def add(self, name: str, obj: T, *, aliases: Iterable[str] = ()) -> None:
        key = _normalise(name)
        if key in self._entries or key in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = obj
        for alias in aliases:
            akey = _normalise(alias)
            if akey in self._entries or akey in self._aliases:
                raise ValueError(f"{self.kind} alias {alias!r} is already registered")
            self._aliases[akey] = key

    def resolve(self, name: str) -> str:
        """Canonical name for ``name`` or an alias of it."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a str; got {type(name).__name__}")
        key = _normalise(name)
        key = self._aliases.get(key, key)
        if key not in self._entries:
            valid = self.names()
            close = difflib.get_close_matches(key, valid + sorted(self._aliases), n=1)
            hint = f"; did you mean {self._aliases.get(close[0], close[0])!r}?" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {', '.join(valid)}{hint}")
        return key

    def get(self, name: str) -> T:
        return self._entries[self.resolve(name)]

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build the entry ``name`` with ``kwargs`` (entries must be callables)."""
        factory = self.get(name)
        return factory(**kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _normalise(name)
        return key in self._entries or key in self._aliases

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
