"""A tiny name -> object registry whose lookups fail with the closest known names."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, Iterator, Mapping, TypeVar

from .errors import ConfigError, UnknownNameError, close_matches_hint

T = TypeVar("T")


def reject_unknown(owner: str, keys: Iterable[str], known: Iterable[str],
                   hints: Mapping[str, str] | None = None, *, suggest: Iterable[str] = (),
                   noun: str = "field") -> None:
    """Raise a ConfigError naming each key of `keys` that is not in `known`, with the closest known
    name (`hints` maps other spellings, e.g. the paper's symbols, to field names; `suggest` adds
    names that are close matches without being fields here, e.g. nested ones). `noun` names what
    the keys are ("field", "key", "parameter")."""
    known = sorted(known)
    unknown = sorted(set(map(str, keys)) - set(known))
    if not unknown:
        return
    # a nested field (`recon.iters`) is matched on its last part (`iters`) and as `recon_iters`
    candidates = {}
    for c in list(suggest) + known:
        candidates.update({c.rpartition(".")[2]: c, c.replace(".", "_"): c})
    named = []
    for key in unknown:
        close = (hints or {}).get(key)
        if close is None:
            match = difflib.get_close_matches(key, list(candidates), n=1)
            close = candidates[match[0]] if match else None
        named.append(f"{key!r}" + (f" (did you mean {close!r}?)" if close else ""))
    raise ConfigError(f"{owner} has no {noun} {', '.join(named)}; {noun}s: {', '.join(known)}")


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
