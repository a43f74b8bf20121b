"""Process titles: what ``ps``, ``top`` and ``psutil`` show for each microray process.

Daemons are named by role (``microray-gcs``, ``microray-raylet``, ``microray-zygote``,
``microray-dashboard``, ``microray-launcher``) followed by their own arguments; a worker
shows what it runs: ``microray::IDLE``, ``microray::f`` during a task,
``microray::Counter`` for an actor and ``microray::Counter.inc`` during a call.

``setproctitle`` rewrites the process's argv memory (what ``/proc/PID/cmdline``, ``ps``
and ``top`` read; never the environment) and its 15-character ``comm`` name; a title is written only when it
changes, so a worker running the same function over and over pays one comparison per task.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

# Keep the environment block intact: by default setproctitle moves the environment away to
# lengthen the title, and /proc/PID/environ then reads as garbage (operators and tools read
# it to tell which session a process belongs to). Titles are then as long as the process's
# original command line, which every microray process's is long enough for.
os.environ.setdefault("SPT_NOENV", "1")

_set: Callable[[str], None] | None
_set_comm: Callable[[str], None] | None
try:
    from setproctitle import setproctitle as _set
    from setproctitle import setthreadtitle as _set_comm
except ImportError:  # pragma: no cover -- a declared dependency; titles are cosmetic
    _set = _set_comm = None

WORKER_PREFIX = "microray::"
IDLE = WORKER_PREFIX + "IDLE"

_current: str | None = None


def set_title(title: str) -> None:
    """Show ``title`` for this process (no-op when it already shows it)."""
    global _current
    if title == _current or _set is None:
        return
    _current = title
    _set(title)


def set_role(role: str, argv: Sequence[str] | None = None) -> None:
    """Name a daemon ``microray-<role>`` followed by its arguments (``argv``, default the
    process's own). Arguments never hold secrets: those travel in files."""
    args = list(sys.argv[1:] if argv is None else argv)
    set_title(" ".join([f"microray-{role}", *args]))
    if _set_comm is not None:  # comm (psutil's name(), top): the role alone, not cut mid-argument
        _set_comm(f"microray-{role}"[:15])


def set_worker(name: str | None) -> None:
    """A worker's title: ``microray::<name>``, or ``microray::IDLE`` for ``None``."""
    set_title(IDLE if not name else WORKER_PREFIX + name)


def current() -> str | None:
    """The title this process last set, or ``None``."""
    return _current


__all__ = ["set_title", "set_role", "set_worker", "current", "IDLE", "WORKER_PREFIX"]
