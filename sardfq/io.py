"""Atomic file writes: a file sardfq writes is either absent or complete, never half-written.

Every writer goes through `atomic_path`: the content goes to a temporary file in the target's
folder (same file system, so the final rename is atomic), is flushed to disk, then renamed over the
target. A process killed mid-write leaves at most a hidden `.NAME.*.tmp` file, which no reader
takes for the real one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on a clean exit it replaces `path`, on an
    error it is removed and `path` is left as it was. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:  # on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, record: Mapping) -> Path:
    """Write `record` as indented JSON to `path`, atomically, through `to_plain`; a value it cannot
    convert is a TypeError (and `path` keeps its old content)."""
    return atomic_write_text(path, json.dumps(to_plain(record), indent=1) + "\n")


def to_plain(value: Any) -> Any:
    """`value` as the plain values JSON holds: mappings (keys as strings), lists (from tuples,
    sets, tensors and arrays), numbers (numpy / torch scalars), strings, booleans and None; objects
    with `to_dict()` and paths are converted too. Anything else is a TypeError. NaN stays a float."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return to_plain(value.to_dict())
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:  # tensors, arrays
        return to_plain(value.tolist())
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def read_record(path: str | os.PathLike) -> dict | None:
    """A JSON object from `path`, or None when the file is absent or not a complete JSON object."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
