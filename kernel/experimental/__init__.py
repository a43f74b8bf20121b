"""Ray's ``experimental`` namespace: ``tqdm_ray`` (imported on first use)."""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("tqdm_ray",)


def __getattr__(name: str) -> Any:
    if name not in _SUBMODULES:
        raise AttributeError(f"module 'microray.experimental' has no attribute {name!r}")
    return importlib.import_module(f"microray.experimental.{name}")
