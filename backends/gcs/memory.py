"""``memory``: the default GCS store, a dict of dicts inside the head process.

Nothing survives the process (no ``persistence`` capability); ``watch`` is
served from in-process queues. Every operation runs under one lock without
awaiting in between, so each is atomic with respect to other coroutines and
threads, and ``compare_and_set`` between two handles has exactly one winner.

A store built by the factory owns its own in-memory "server". Further client
handles onto the *same* data (what a second Redis client would be) come from
``open_client()``, optionally with another ``namespace``; namespaces of one
server never see each other's keys, as with Redis and etcd.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Sequence

import structlog

from microray.exceptions import ConfigError, GcsUnavailableError
from microray.gcs.store_support import as_bytes, check_name, schema_mismatch
from microray.hookspecs import hookimpl
from microray.interfaces.gcs_store import WatchEvent
from microray.registrations import GcsStoreRegistration, OptionSpec

log = structlog.get_logger(__name__)

__all__ = ["MemoryGcsStore", "microray_gcs_stores"]

class _MemoryServer:
    """The state shared by every handle opened on one in-memory store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # namespace -> table -> key -> value
        self.data: dict[str, dict[str, dict[bytes, bytes]]] = {}
        self.schema: dict[str, int] = {}
        # weak: a watch nobody iterates or references any more is dropped with its buffer
        self.watches: weakref.WeakSet[_MemoryWatch] = weakref.WeakSet()

    def table(self, namespace: str, table: str) -> dict[bytes, bytes]:
        return self.data.setdefault(namespace, {}).setdefault(table, {})

    def publish(self, namespace: str, event: WatchEvent) -> None:
        """Hand ``event`` to every matching watch. Called with ``lock`` held."""
        for watch in list(self.watches):
            if (
                watch.namespace == namespace
                and watch.table == event.table
                and event.key.startswith(watch.prefix)
            ):
                watch.push(event)


class _MemoryWatch:
    """An async iterator over the changes of one table/prefix.

    It is registered when ``watch()`` is called, so every change made after
    that call is delivered, even ones made before iteration starts.
    """

    def __init__(self, store: "MemoryGcsStore", table: str, prefix: bytes) -> None:
        self.store = store
        self.namespace = store.namespace
        self.table = table
        self.prefix = prefix
        self._buffer: deque[WatchEvent] = deque()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None

    # producer side (lock held)
    def push(self, event: WatchEvent) -> None:
        self._buffer.append(event)
        self._wake()

    def end(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return  # nobody is waiting yet; the consumer checks the buffer first
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wakeup.set()
        else:
            try:
                loop.call_soon_threadsafe(wakeup.set)
            except RuntimeError:  # the consumer's loop is closed
                pass

    # consumer side
    def __aiter__(self) -> "_MemoryWatch":
        return self

    async def __anext__(self) -> WatchEvent:
        if self._wakeup is None:
            self._loop = asyncio.get_running_loop()
            self._wakeup = asyncio.Event()
        lock = self.store._server.lock
        while True:
            with lock:
                if self._buffer:
                    return self._buffer.popleft()
                if self._closed:
                    raise StopAsyncIteration
                self._wakeup.clear()
            await self._wakeup.wait()

    async def aclose(self) -> None:
        """Stop watching; iteration ends."""
        with self.store._server.lock:
            self.store._server.watches.discard(self)
            self.end()


class MemoryGcsStore:
    """A ``GcsStore`` kept in process memory. See the module docstring."""

    def __init__(self, namespace: str = "default", *, _server: _MemoryServer | None = None) -> None:
        self.namespace = check_name("namespace", namespace)
        self._server = _server or _MemoryServer()
        self._closed = False
        self._watches: weakref.WeakSet[_MemoryWatch] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<MemoryGcsStore namespace={self.namespace!r}{' closed' if self._closed else ''}>"

    def open_client(self, namespace: str | None = None) -> "MemoryGcsStore":
        """Another handle on this store's data (a second "client"), in ``namespace``
        (default: this handle's namespace)."""
        return MemoryGcsStore(namespace or self.namespace, _server=self._server)

    def _table(self, table: str) -> dict[bytes, bytes]:
        """The table dict; call with the lock held."""
        if self._closed:
            raise GcsUnavailableError(f"memory GCS store (namespace {self.namespace!r}) is closed")
        return self._server.table(self.namespace, check_name("table", table))

    def _changed(self, table: str, key: bytes, value: bytes | None) -> None:
        kind = "delete" if value is None else "put"
        self._server.publish(self.namespace, WatchEvent(kind, table, key, value))

    # -- GcsStore ----------------------------------------------------------
    async def ping(self) -> None:
        """Raise ``GcsUnavailableError`` if the store is closed."""
        with self._server.lock:
            self._table("_ping")

    async def check_schema(self, version: int) -> None:
        """Record ``version`` on first use; raise ``ConfigError`` if another is stored."""
        with self._server.lock:
            self._table("_ping")
            stored = self._server.schema.setdefault(self.namespace, version)
        if stored != version:
            raise ConfigError(schema_mismatch(f"memory GCS store namespace {self.namespace!r}", stored, version))

    async def put(self, table: str, key: bytes, value: bytes, overwrite: bool = True) -> bool:
        key, value = as_bytes(key, "key"), as_bytes(value, "value")
        with self._server.lock:
            data = self._table(table)
            added = key not in data
            if not added and not overwrite:
                return False
            data[key] = value
            self._changed(table, key, value)
            return added

    async def get(self, table: str, key: bytes) -> bytes | None:
        key = as_bytes(key, "key")
        with self._server.lock:
            return self._table(table).get(key)

    async def multi_get(self, table: str, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        wanted = [as_bytes(k, "key") for k in keys]
        with self._server.lock:
            data = self._table(table)
            return {k: data[k] for k in wanted if k in data}

    async def get_all(self, table: str, prefix: bytes = b"") -> dict[bytes, bytes]:
        prefix = as_bytes(prefix, "prefix")
        with self._server.lock:
            data = self._table(table)
            found = [(k, v) for k, v in data.items() if k.startswith(prefix)]
        found.sort(key=lambda kv: kv[0])
        return dict(found)

    async def delete(self, table: str, key: bytes) -> bool:
        key = as_bytes(key, "key")
        with self._server.lock:
            data = self._table(table)
            if key not in data:
                return False
            del data[key]
            self._changed(table, key, None)
            return True

    async def batch_delete(self, table: str, keys: Sequence[bytes]) -> int:
        wanted = [as_bytes(k, "key") for k in keys]
        deleted = 0
        with self._server.lock:
            data = self._table(table)
            for key in wanted:
                if data.pop(key, None) is not None:
                    deleted += 1
                    self._changed(table, key, None)
        return deleted

    async def exists(self, table: str, key: bytes) -> bool:
        key = as_bytes(key, "key")
        with self._server.lock:
            return key in self._table(table)

    async def compare_and_set(
        self, table: str, key: bytes, expected: bytes | None, value: bytes
    ) -> bool:
        key, value = as_bytes(key, "key"), as_bytes(value, "value")
        if expected is not None:
            expected = as_bytes(expected, "expected value")
        with self._server.lock:
            data = self._table(table)
            if data.get(key) != expected:
                return False
            data[key] = value
            self._changed(table, key, value)
            return True

    def watch(self, table: str, prefix: bytes = b"") -> AsyncIterator[WatchEvent]:
        """Changes to ``table`` under ``prefix`` from this call on, in order."""
        prefix = as_bytes(prefix, "prefix")
        with self._server.lock:
            self._table(table)
            watch = _MemoryWatch(self, table, prefix)
            self._server.watches.add(watch)
            self._watches.add(watch)
        return watch

    async def close(self) -> None:
        """Close this handle: its watches end and further calls raise. Idempotent.

        The data stays for other handles of the same store."""
        with self._server.lock:
            if self._closed:
                return
            self._closed = True
            for watch in list(self._watches):
                self._server.watches.discard(watch)
                watch.end()
            self._watches.clear()


@hookimpl
def microray_gcs_stores() -> list[GcsStoreRegistration]:
    """Register the ``memory`` GCS store."""
    return [
        GcsStoreRegistration(
            name="memory",
            factory=MemoryGcsStore,
            description="In-process dict of dicts; the default. Lost when the head exits.",
            capabilities=frozenset({"watch"}),
            options={
                "namespace": OptionSpec(
                    str, "Cluster id; keys of different namespaces never mix", default="default"
                ),
            },
        )
    ]
