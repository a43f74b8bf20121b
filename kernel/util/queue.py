"""``Queue``: a first-in first-out queue shared by tasks and actors, backed by an actor
(Ray's ``ray.util.queue.Queue``). Written only against microray's public API."""

from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from collections.abc import Iterable
from typing import Any

import microray


class Empty(_stdlib_queue.Empty):
    """Raised by ``get`` when the queue is empty (after ``timeout``, or at once without blocking)."""


class Full(_stdlib_queue.Full):
    """Raised by ``put`` when the queue is full (after ``timeout``, or at once without blocking)."""


def _plain(error: BaseException, cls: type[Exception]) -> Exception:
    """The queue actor's own ``Empty``/``Full`` out of the task error that carried it,
    so callers get the exception itself, not one wrapped in ``RayTaskError``."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, cls) else cls(*getattr(cause, "args", ()))


class _QueueActor:
    """The actor holding the items; async, so blocked getters and putters wait together."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full from None

    async def put_batch(self, items: list, timeout: float | None = None) -> None:
        for item in items:
            await self.put(item, timeout)

    async def get(self, timeout: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty from None

    def put_nowait(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full from None

    def put_nowait_batch(self, items: list) -> None:
        if self.maxsize > 0 and len(items) + self.qsize() > self.maxsize:
            raise Full(f"Cannot add {len(items)} items to queue of size {self.qsize()} and maxsize {self.maxsize}.")
        for item in items:
            self.queue.put_nowait(item)

    def get_nowait(self) -> Any:
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty from None

    def get_nowait_batch(self, num_items: int) -> list:
        if num_items > self.qsize():
            raise Empty(f"Cannot get {num_items} items from queue of size {self.qsize()}.")
        return [self.queue.get_nowait() for _ in range(num_items)]


class Queue:
    """A queue usable from the driver, tasks and actors (pass it as an argument)."""

    def __init__(self, maxsize: int = 0, actor_options: dict | None = None) -> None:
        self.maxsize = maxsize
        self.actor = microray.remote(_QueueActor).options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        return self.qsize()

    def qsize(self) -> int:
        return microray.get(self.actor.qsize.remote())

    def empty(self) -> bool:
        return microray.get(self.actor.empty.remote())

    def full(self) -> bool:
        return microray.get(self.actor.full.remote())

    def _put_ref(self, item: Any, block: bool, timeout: float | None) -> Any:
        if not block:
            return self.actor.put_nowait.remote(item)
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        return self.actor.put.remote(item, timeout)

    def _get_ref(self, block: bool, timeout: float | None) -> Any:
        if not block:
            return self.actor.get_nowait.remote()
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        return self.actor.get.remote(timeout)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; with ``block`` wait up to ``timeout`` for room, else raise ``Full``."""
        try:
            microray.get(self._put_ref(item, block, timeout))
        except Full as exc:
            raise _plain(exc, Full) from None

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """``put`` for asyncio code: awaits room instead of blocking the thread."""
        try:
            await self._put_ref(item, block, timeout)
        except Full as exc:
            raise _plain(exc, Full) from None

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item; with ``block`` wait up to ``timeout``, else raise ``Empty``."""
        try:
            return microray.get(self._get_ref(block, timeout))
        except Empty as exc:
            raise _plain(exc, Empty) from None

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """``get`` for asyncio code: awaits an item instead of blocking the thread."""
        try:
            return await self._get_ref(block, timeout)
        except Empty as exc:
            raise _plain(exc, Empty) from None

    def put_nowait(self, item: Any) -> None:
        return self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all ``items`` at once, or none (``Full``) if they do not all fit."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        try:
            microray.get(self.actor.put_nowait_batch.remote(list(items)))
        except Full as exc:
            raise _plain(exc, Full) from None

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list:
        """Remove and return ``num_items`` items, or none (``Empty``) if there are fewer."""
        if not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        try:
            return microray.get(self.actor.get_nowait_batch.remote(num_items))
        except Empty as exc:
            raise _plain(exc, Empty) from None

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """Kill the actor behind the queue."""
        if self.actor is not None:
            microray.kill(self.actor)
        self.actor = None
