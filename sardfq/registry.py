"""A tiny name -> object registry whose lookups fail with the closest known names."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


def close_matches_hint(name: str, known: list[str]) -> str:
    """' Did you mean: a, b?' for the known names closest to `name` (empty when none is close)."""
    matches = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


class Registry(Generic[T]):
    """Maps names to objects; `register` is a decorator, `get` raises UnknownNameError with suggestions."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = sorted(self._items)
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{close_matches_hint(name, known)} "
                f"Known: {', '.join(known)}."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
