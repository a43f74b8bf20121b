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

    Asks the kernel, not Python: every thread of the process (``/proc/self/task``)
    besides the main one -- Python threads, gRPC's core threads, a BLAS pool -- and,
    while gRPC is loaded, any open epoll instance (its event engine's)."""
    reasons = []
    if _grpc_started:
        reasons.append("microray's gRPC client or server ran in this process")
    try:
        tids = [t for t in os.listdir("/proc/self/task") if int(t) != os.getpid()]
    except OSError:  # no /proc: Python's own count is all there is
        if threading.active_count() > 1:
            reasons.append(f"{threading.active_count() - 1} Python thread(s) besides the main thread")
        return reasons
    if tids:
        reasons.append(f"{len(tids)} thread(s) besides the main thread: {', '.join(_thread_names(tids))}")
    if "grpc" in sys.modules and _epoll_fds():
        reasons.append("gRPC is loaded and an epoll instance is open (gRPC's core may hold it)")
    return reasons


def _thread_names(tids: list[str]) -> list[str]:
    """Each thread's name: a Python thread's own (``Python thread 'name'``), else the
    kernel's (``grpc_global_tim``, ``event_engine``, ...); "name xN" for repeats."""
    python = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    counts: dict[str, int] = {}
    for tid in tids:
        if int(tid) in python:
            name = f"Python thread {python[int(tid)]!r}"
        else:
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    name = f.read().strip()
            except OSError:
                continue  # exited meanwhile
        counts[name] = counts.get(name, 0) + 1
    return [name if n == 1 else f"{name} x{n}" for name, n in sorted(counts.items())]


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
