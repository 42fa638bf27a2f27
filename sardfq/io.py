"""Atomic writes: a file or folder sardfq writes is either absent, the old one, or the complete new
one, never half-written; and sardfq replaces only regular files and folders of its own.

Every file writer goes through `atomic_path`: the content goes to a temporary file in the target's
folder (same file system, so the final rename is atomic), is flushed to disk, then renamed over the
target, and the folder is flushed so that the rename itself survives a power cut. A process killed
mid-write leaves at most a hidden `.NAME.*.tmp` file, which no reader takes for the real one.

A result of several files (a saved model, a run's folder) goes through `atomic_folder`: the files
are written into a temporary sibling folder, which then takes the target's place in one step (on
Linux, `renameat2(RENAME_EXCHANGE)` swaps the two folders; elsewhere the old folder is moved aside
first, leaving an instant in which neither is there) and the old folder is removed.

What may be replaced is checked before anything is written (`check_output_file`,
`check_output_folder`): an existing target that is not a regular file (a folder, a device, a link
to one) or, for folders, a folder that holds none of the files sardfq writes there, is a
`ConfigError`, as is a path under a file.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .errors import ConfigError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _kind(path: Path) -> str:
    """What is at `path`, in words (for refusals)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    return "a device or other special file"


def _check_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of `path` must be a folder (else the path lies under a file)."""
    for parent in path.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise ConfigError(f"{what} {path} cannot be created: {parent} is {_kind(parent)}, not a "
                                  "folder; choose a path under a folder")
            return


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """`path` as a place sardfq may write a file: absent or a regular file (a link to one
    included), under folders. Anything else is a ConfigError naming `what` (e.g. "--out")."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_file():
        raise ConfigError(f"{what} {path} exists and is {_kind(path)}, not a regular file: sardfq "
                          "replaces only files; name a file path")
    _check_parent(path, what)
    return path


def check_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """`path` as a folder sardfq writes files into (and never replaces): an existing folder, or a
    path that can be created as one. Anything else is a ConfigError naming `what`."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise ConfigError(f"{what} {path} exists and is {_kind(path)}, not a folder; name a folder")
    _check_parent(path, what)
    return path


def check_output_folder(path: str | os.PathLike, what: str = "output folder", *,
                        ours: Iterable[str]) -> Path:
    """`path` as a folder sardfq may (re)place whole: absent, empty, or a folder that holds one of
    the files sardfq writes there (`ours`, e.g. `("quant_config.json",)`). Anything else (a file,
    a link, a foreign folder, a path under a file) is a ConfigError naming `what`."""
    path = Path(path)
    ours = tuple(ours)
    if os.path.islink(path):
        raise ConfigError(f"{what} {path} is a symbolic link; name the folder itself")
    if os.path.lexists(path):
        if not path.is_dir():
            raise ConfigError(f"{what} {path} exists and is {_kind(path)}, not a folder; name a new "
                              "folder (or remove that one)")
        if any(path.iterdir()) and not any(os.path.lexists(path / name) for name in ours):
            raise ConfigError(f"{what} {path} is a folder sardfq did not write (it holds none of "
                              f"{', '.join(ours)}) and would be replaced whole; name a new or empty folder")
    else:
        _check_parent(path, what)
    return path


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk; POSIX only (Windows cannot open folders)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on a clean exit it replaces `path`, on an
    error it is removed and `path` is left as it was. Creates the parent folder; refuses (before
    writing) a `path` that is not a regular file (`check_output_file`)."""
    path = check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:  # on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        check_output_file(path)  # nothing else took the name while the content was written
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> None:
    """Swap the folders at `a` and `b` in one step (Linux `renameat2` with RENAME_EXCHANGE). Where
    that is missing, `b` is moved aside, `a` renamed to `b`, and the old `b` moved to `a`: for an
    instant neither folder is at `b`."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if os.name == "posix" else None
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a real failure, not "unsupported"
            raise OSError(code, os.strerror(code), str(b))
    aside = a.with_name(a.name + ".old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(root))


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, ours: Iterable[str], what: str = "output folder"
                  ) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path` to write a result of several files into; on a
    clean exit it takes `path`'s place whole (the old folder removed), on an error it is removed
    and `path` is left as it was. `path` must be absent, empty or a folder holding one of `ours`
    (`check_output_folder`), checked before and again just before the swap."""
    ours = tuple(ours)
    path = check_output_folder(path, what, ours=ours)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        _fsync_tree(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        check_output_folder(path, what, ours=ours)
        if os.path.lexists(path):
            _exchange(tmp, path)  # tmp now holds the old folder, removed below
        else:
            os.rename(tmp, path)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
