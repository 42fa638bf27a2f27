"""The exceptions sardfq raises for bad input: each message says what was wrong and how to fix it."""
from __future__ import annotations

import difflib


def close_matches_hint(name: str, known: list[str]) -> str:
    """' Did you mean: a, b?' for the known names closest to `name` (empty when none is close)."""
    matches = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


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
