"""The kinds of plain value a model's description holds, as `ModelInfo` and the architecture's
size bounds read them: a boolean is neither a whole nor a real number here (JSON's `true` is not
the size 1). Imports nothing of sardfq, so both rooms can share it."""
from __future__ import annotations


def is_sequence(value) -> bool:
    return isinstance(value, (list, tuple))


def is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
