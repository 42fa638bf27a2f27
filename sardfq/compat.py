"""Old keyword names that still work: where a keyword was renamed (a bit setting such as `w4a4`
was `bits=`, and is `setting=` now that `bits` means an integer bit-width everywhere), code and
notebooks written for the old name keep running with the same meaning."""
from __future__ import annotations

import functools


def renamed_keywords(**renames: str):
    """Decorator: `@renamed_keywords(bits="setting")` lets a caller pass `bits=` for `setting=`.
    Both at once is a TypeError, as Python's own error for a keyword given twice."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}() got {old}= and {new}=, the old and the new name "
                                        f"of one argument: pass {new}= only")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)
        return inner
    return wrap
