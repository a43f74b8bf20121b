"""Helpers shared by the ``GcsStoreContract`` modules: running a test body in one event loop
and reading watch iterators with timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from microray.interfaces.gcs_store import GcsStore, WatchEvent
from microray.registrations import GcsStoreRegistration

TEN_MB = 10_000_000
#: How long a call may take to report a lost server: retry_timeout (1 s here) + slack.
UNAVAILABLE_BOUND = 8.0


def run(body: Callable[[], Awaitable[None]], *stores: Any, timeout: float = 60.0) -> None:
    """Run ``body()`` in a new event loop, then close ``stores`` in that loop."""

    async def main() -> None:
        try:
            await asyncio.wait_for(body(), timeout)
        finally:
            for store in stores:
                try:
                    await store.close()
                except Exception:  # noqa: BLE001 -- the body's error matters more
                    pass

    asyncio.run(main())


class WatchReader:
    """Reads a watch iterator with timeouts without ever cancelling it.

    A pending ``__anext__`` survives a timeout and is awaited again next time,
    so the backend's generator is never interrupted by the test.
    """

    def __init__(self, iterator: AsyncIterator[WatchEvent]) -> None:
        self.iterator = iterator
        self._pending: asyncio.Future[WatchEvent] | None = None

    async def next(self, timeout: float) -> WatchEvent:
        """The next event; ``TimeoutError`` if none within ``timeout``;
        ``StopAsyncIteration`` if the watch ended."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self.iterator.__anext__())
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            raise TimeoutError(f"no watch event within {timeout}s")
        fut, self._pending = self._pending, None
        return fut.result()

    async def until(self, key: bytes, timeout: float = 15.0) -> list[WatchEvent]:
        """Every event up to and including the first one for ``key``."""
        deadline = time.monotonic() + timeout
        seen: list[WatchEvent] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"watch did not deliver {key!r} within {timeout}s; got {seen}")
            try:
                event = await self.next(remaining)
            except TimeoutError:
                continue
            seen.append(event)
            if event.key == key:
                return seen

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            try:
                await self._pending
            except BaseException:  # noqa: BLE001
                pass
            self._pending = None
        aclose = getattr(self.iterator, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # noqa: BLE001
                pass


async def start_watch(
    store: GcsStore, table: str, prefix: bytes = b"", timeout: float = 15.0
) -> WatchReader:
    """Open a watch and return once it provably sees new writes.

    Writes a marker key under ``prefix`` until the watch delivers the marker
    value written last; every write after that is guaranteed to be seen.
    """
    reader = WatchReader(store.watch(table, prefix))
    marker = prefix + b"~watch-ready"
    deadline = time.monotonic() + timeout
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        want = str(attempt).encode()
        await store.put(table, marker, want)
        wait_until = time.monotonic() + min(0.1 * 2 ** (attempt - 1), 0.5)
        while time.monotonic() < wait_until:
            try:
                event = await reader.next(max(0.0, wait_until - time.monotonic()))
            except TimeoutError:
                break
            if event.key == marker and event.value == want:
                return reader
    await reader.close()
    raise AssertionError(f"watch on {table!r} saw none of {attempt} marker writes in {timeout}s")


def _caps(registration: GcsStoreRegistration) -> frozenset[str]:
    return registration.capabilities


def _watch_applies(registration: GcsStoreRegistration, store: GcsStore) -> bool:
    """True when the backend declares ``watch``; otherwise check that ``watch``
    raises ``NotImplementedError`` (at the call or at the first ``__anext__``)."""
    if "watch" in _caps(registration):
        return True

    async def first() -> None:
        iterator = store.watch("w")
        await iterator.__anext__()

    with pytest.raises(NotImplementedError):
        asyncio.run(first())
    return False
