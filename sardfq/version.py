"""The package version and the versions of the libraries a result depends on (kept in records)."""
from __future__ import annotations

import platform

__version__ = "0.1.0"


def library_versions() -> dict[str, str]:
    """sardfq, torch, timm and Python versions, as every record and calibration set stores them."""
    import timm
    import torch

    return {"sardfq": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}
