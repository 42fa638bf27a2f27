"""The exceptions sardfq raises for bad input: each message says what was wrong and how to fix it,
and the helpers that name the closest known names in it (`close_matches_hint`, `reject_unknown`)."""
from __future__ import annotations

import difflib
from typing import Iterable, Mapping


def close_matches_hint(name: str, known: list[str]) -> str:
    """' Did you mean: a, b?' for the known names closest to `name` (empty when none is close)."""
    matches = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


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


class SardfqError(Exception):
    """Base class of every error sardfq raises on purpose (the CLI prints these without a traceback)."""


class UnknownNameError(SardfqError, KeyError):
    """A name (model, method, quantizer kind, ...) that no registry knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsNotFoundError(SardfqError):
    """Pretrained weights are neither cached nor given as a checkpoint."""


class CheckpointError(SardfqError):
    """A checkpoint file that cannot be read or does not fit the model."""


class DataNotFoundError(SardfqError):
    """A data set that is not where sardfq looked, or whose files cannot be read as images."""


class ConfigError(SardfqError, ValueError):
    """An invalid configuration value; the message names the field."""


class UnsupportedModelError(SardfqError, ValueError):
    """A model whose architecture sardfq cannot quantize or probe; the message names what is missing."""


class ExportError(SardfqError, ValueError):
    """A model, mode or output path that cannot be exported as asked; the message says what can."""
