"""A tiny name -> object registry whose lookups fail with the closest known names."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

# reject_unknown is re-exported: the configs import it from here, beside Registry
from .errors import UnknownNameError, close_matches_hint, reject_unknown  # noqa: F401

T = TypeVar("T")


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
