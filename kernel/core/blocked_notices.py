"""A worker's "blocked in get()" notices to its raylet, sent one at a time, in order.

A worker blocked in ``get()``/``wait()`` lends its CPU back to the raylet so that the
tasks it waits for can get a worker (nested tasks); it takes the CPU again when it
unblocks. The raylet keeps one flag per worker, so it must see the notices in the order
the worker sent them: a task that calls ``get()`` twice in a row sends blocked,
unblocked, blocked, and if the first "unblocked" overtakes the second "blocked" (separate
RPCs are not ordered), the raylet ends up thinking the worker runs while it waits, and
that CPU is gone until the task ends. With enough tasks doing that at once every CPU of
the node is lost that way and the nested tasks never get a worker.

So this class sends at most one notice at a time, waiting for the raylet's reply before
the next, and only ever the worker's state *now*: a block and unblock that both happen
while a notice is on the wire cancel out and send nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable


class BlockedNotices:
    """Tracks how many user threads of this worker are blocked in ``get()``/``wait()``
    and keeps the raylet told whether that number is above zero.

    ``enter``/``leave`` are called from any thread; ``send(blocked)`` runs on ``loop``
    and must return once the raylet has applied the notice (or failed to)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Callable[[bool], Awaitable[None]]) -> None:
        self._loop = loop
        self._send = send
        self._lock = threading.Lock()
        self._waiting = 0       # user threads blocked now (any thread writes, under the lock)
        self._told = False      # the last state sent to the raylet (loop thread only)
        self._sending = False   # a sender task is running (loop thread only)

    @property
    def blocked(self) -> bool:
        """Whether a thread waits now (whatever the raylet was told so far)."""
        return self._waiting > 0

    @property
    def told(self) -> bool:
        """What the raylet was last told (for tests)."""
        return self._told

    def enter(self) -> None:
        """A thread starts waiting in get()/wait()."""
        with self._lock:
            self._waiting += 1
        self._loop.call_soon_threadsafe(self._kick)

    def leave(self) -> None:
        """A thread that called ``enter`` stopped waiting."""
        with self._lock:
            self._waiting -= 1
        self._loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        if not self._sending and self._next_notice() is not None:
            self._sending = True
            self._loop.create_task(self._flush())

    def _next_notice(self) -> bool | None:
        """The notice to send now (True: blocked, False: unblocked), or None when the
        raylet already knows the current state."""
        want = self._waiting > 0
        return None if want == self._told else want

    async def _flush(self) -> None:
        try:
            while (notice := self._next_notice()) is not None:
                self._told = notice
                await self._send(notice)
        finally:
            self._sending = False
