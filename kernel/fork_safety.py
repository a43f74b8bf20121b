"""Whether this process may fork now: the threads and gRPC state that make a fork unsafe,
and the start method (``fork`` or ``spawn``) chosen from them."""

from __future__ import annotations

import os
import sys
import threading

import structlog

log = structlog.get_logger(__name__)

_grpc_started = False


def mark_grpc_started() -> None:
    """This process now runs gRPC (whose core threads Python cannot see): never fork a
    new launcher from it."""
    global _grpc_started
    _grpc_started = True


def fork_hazards() -> list[str]:
    """Why forking this process now would be unsafe; empty when it is safe.

    Asks the kernel, not Python: every thread of the process (``/proc/self/task``) besides
    the main one that is a Python thread or a named native thread (gRPC's core names its
    own: ``grpc_global_tim``, ``event_engine``, ...), and, while gRPC is loaded, any open
    epoll instance (its event engine's). Unnamed native threads -- they keep the process's
    own name, as OpenBLAS's pool does -- are not a hazard: such pools re-create themselves
    in a child (pthread_atfork), and forking past them keeps numpy's pages shared with the
    node processes instead of loading a second copy."""
    reasons = []
    if _grpc_started:
        reasons.append("microray's gRPC client or server ran in this process")
    try:
        tids = [t for t in os.listdir("/proc/self/task") if int(t) != os.getpid()]
    except OSError:  # no /proc: Python's own count is all there is
        if threading.active_count() > 1:
            reasons.append(f"{threading.active_count() - 1} Python thread(s) besides the main thread")
        return reasons
    hazardous = _named_threads(tids)
    if hazardous:
        reasons.append(f"{sum(hazardous.values())} thread(s) besides the main thread: "
                       + ", ".join(name if n == 1 else f"{name} x{n}" for name, n in sorted(hazardous.items())))
    if "grpc" in sys.modules and _epoll_fds():
        reasons.append("gRPC is loaded and an epoll instance is open (gRPC's core may hold it)")
    return reasons


def _comm(tid: int | str) -> str | None:
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None  # exited meanwhile


def _named_threads(tids: list[str]) -> dict[str, int]:
    """The threads that make a fork unsafe, by name with their count: Python threads
    (``Python thread 'name'``) and native threads named otherwise than the main thread."""
    python = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    main = _comm(os.getpid())
    counts: dict[str, int] = {}
    for tid in tids:
        if int(tid) in python:
            name = f"Python thread {python[int(tid)]!r}"
        else:
            comm = _comm(tid)
            if comm is None or comm == main:
                continue  # gone, or an unnamed native pool (BLAS): safe to fork past
            name = comm
        counts[name] = counts.get(name, 0) + 1
    return counts


def _epoll_fds() -> int:
    n = 0
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                n += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
            except OSError:
                pass
    except OSError:
        pass
    return n


def choose_start_method(requested: str, *, embedded: bool = True) -> str:
    """``spawn`` or ``fork`` as asked; ``auto``: ``fork`` for an embedded head (its node
    processes are forks of a clean launcher, see ``launcher``), and for a detached head
    (forked from this process itself) when ``fork_hazards()`` finds nothing."""
    if requested in ("fork", "spawn"):
        return requested
    if embedded:
        return "fork"
    hazards = fork_hazards()
    if hazards:
        log.debug("start_method_spawn", reason="; ".join(hazards))
        return "spawn"
    return "fork"
