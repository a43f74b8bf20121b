"""microray: Ray's programming model for Python, as a plugin-based microkernel.

``import microray as ray`` and use the Ray API.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
import os
from typing import Any

# microray forks its own processes (kernel/process.py) only while gRPC is idle or before
# it starts; gRPC's fork handlers would only add noise to every subprocess start.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

# Public names resolved lazily so that ``import microray`` stays light (no grpc,
# no backend dependency) until the runtime is used.
_API = {
    "init": "microray.api",
    "shutdown": "microray.api",
    "is_initialized": "microray.api",
    "remote": "microray.api",
    "get": "microray.api",
    "put": "microray.api",
    "wait": "microray.api",
    "cancel": "microray.api",
    "kill": "microray.api",
    "get_actor": "microray.api",
    "method": "microray.api",
    "get_runtime_context": "microray.api",
    "nodes": "microray.api",
    "cluster_resources": "microray.api",
    "available_resources": "microray.api",
    "ObjectRef": "microray.core.object_ref",
    "ObjectRefGenerator": "microray.core.object_ref",
    "exceptions": None,
    "util": None,
    # more of Ray's top-level names
    "get_gpu_ids": "microray.api",
    "timeline": "microray.api",
    "ObjectID": "microray.core.object_ref",
    "DynamicObjectRefGenerator": "microray.core.object_ref",
    "JobID": "microray.ids",
    "NodeID": "microray.ids",
    "WorkerID": "microray.ids",
    "ActorID": "microray.ids",
    "TaskID": "microray.ids",
    "PlacementGroupID": "microray.ids",
    "UniqueID": "microray.ids",
    "cloudpickle": None,
    "runtime_context": None,
    "job_config": None,
    "dag": None,
    "experimental": None,
    "actor": None,
}

__all__ = ["__version__", *_API]


def _import_structlog_without_rich() -> None:
    """Import structlog with ``rich`` hidden, unless either is loaded already.

    ``structlog.dev`` imports rich (and with it pygments) at import time only to format
    exceptions on a console: ~2.5-5 MB in the driver and in the node processes forked
    from it, for a feature we do not use (plain tracebacks are printed instead). The CLI
    imports rich itself, for its tables, and is unaffected."""
    import sys

    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        import structlog  # noqa: F401
    finally:
        if sys.modules.get("rich", 0) is None:
            del sys.modules["rich"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'microray' has no attribute {name!r}")
    _import_structlog_without_rich()
    module = _API[name]
    if module is None:
        value = importlib.import_module(f"microray.{name}")
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
