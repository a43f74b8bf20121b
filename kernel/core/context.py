"""The process's current core worker and the task running in this thread.

The one owner of "which core worker does this process talk to the cluster through":
``api``, ``actor``, ``remote_function``, ``runtime_context`` and ``object_ref`` read it
here and none of them imports another to find it. A ``CoreWorker`` makes itself current
when it has connected and stops being current when it shuts down.

``worker`` is read on hot paths (every ``ObjectRef`` created or dropped), so it is a
plain module attribute: read ``context.worker``, never bind it with ``from ... import``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from microray.exceptions import RaySystemError

if TYPE_CHECKING:
    from microray.core.worker import CoreWorker

# The connected core worker of this process, or None. Set only through set_worker().
worker: CoreWorker | None = None

# What connects a driver that uses the API before calling init() (Ray connects on first
# use). The public API registers its init() here when it is imported, so this module
# never imports the layer above it.
_auto_init: Callable[[], Any] | None = None

_current_task: contextvars.ContextVar[Any] = contextvars.ContextVar("microray_task", default=None)


def set_worker(new: CoreWorker | None) -> None:
    """Make ``new`` the process's current core worker (None: disconnected)."""
    global worker
    worker = new


def set_auto_init(init: Callable[[], Any]) -> None:
    """Register what ``current_worker()`` calls to connect when no worker is current."""
    global _auto_init
    _auto_init = init


def current_worker() -> CoreWorker:
    """The current core worker, connecting first (``init()`` with no arguments) when
    there is none, as Ray does on first use of the API."""
    w = worker
    if w is not None:
        return w
    if _auto_init is not None:
        _auto_init()
    if worker is None:
        raise RaySystemError("microray is not initialized; call microray.init() first")
    return worker


def current_task() -> Any:
    """The task (a ``TaskSpec``) executed in this thread or asyncio task, or None."""
    return _current_task.get()


# ``enter_task(spec)`` marks ``spec`` as the task running here and returns the token to
# pass to ``leave_task``, which undoes it: the context variable's own methods, bound
# once (they run around every task a worker executes)
enter_task: Callable[[Any], contextvars.Token[Any]] = _current_task.set
leave_task: Callable[[contextvars.Token[Any]], None] = _current_task.reset
