"""The half of ``GcsStoreContract`` that loses things: persistence across reconnects and
server restarts, a lost or hung server, and watch streams. Mixed into ``GcsStoreContract``
(see ``microray.testing.contracts.gcs_store`` for the fixtures it relies on)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from microray.exceptions import ConfigError, GcsUnavailableError
from microray.interfaces.gcs_store import GcsStore
from microray.registrations import GcsStoreRegistration
from microray.testing.contracts._gcs_store_support import (
    UNAVAILABLE_BOUND,
    _caps,
    _watch_applies,
    run,
    start_watch,
)


class GcsStoreResilienceTests:
    """Persistence, losing the server and watch; needs the fixtures of ``GcsStoreContract``."""

    # -- persistence -------------------------------------------------------------------
    def test_persistence_as_declared(
        self,
        store: GcsStore,
        store_factory: Callable[..., GcsStore] | None,
        registration: GcsStoreRegistration,
        store_options: dict[str, Any] | None,
        gcs_server: Any,
    ) -> None:
        if "persistence" not in _caps(registration):
            # No persistence declared: a new store with the same options starts empty
            # (nothing leaks between stores through hidden global state).
            if store_options is None:
                pytest.skip("needs `store_options` to build a fresh store")
            fresh = registration.factory(**registration.validate_options("gcs_store", store_options))

            async def body_fresh() -> None:
                await store.put("persist", b"k", b"v")
                assert await fresh.get("persist", b"k") is None
                assert await fresh.get_all("persist") == {}

            run(body_fresh, store, fresh)
            return

        async def write() -> None:
            await store.put("persist", b"k", b"v")
            await store.put("persist", b"\x00bin", b"\xff" * 1000)
            await store.check_schema(7)

        run(write, store)  # closes the writing client
        if gcs_server is not None:
            gcs_server.restart()
        reopened = self._second(store_factory)

        async def read() -> None:
            assert await reopened.get_all("persist") == {b"\x00bin": b"\xff" * 1000, b"k": b"v"}
            await reopened.check_schema(7)
            with pytest.raises(ConfigError):
                await reopened.check_schema(8)

        run(read, reopened)

    # -- losing the server -------------------------------------------------------------
    def test_lost_server_raises_unavailable_in_bounded_time(
        self, store_factory: Callable[..., GcsStore] | None, gcs_server: Any
    ) -> None:
        if gcs_server is None:
            # An in-process store cannot lose its server; closing is how it goes away
            # (test_ping_and_close checks that).
            client = self._second(store_factory)

            async def body_closed() -> None:
                await client.put("lost", b"k", b"v")
                await client.close()
                with pytest.raises(GcsUnavailableError):
                    await client.put("lost", b"k", b"v2")

            run(body_closed, client)
            return
        client = self._second(store_factory, retry_timeout=1.0)

        async def body() -> None:
            await client.ping()
            await client.put("lost", b"k", b"v")
            gcs_server.stop()
            try:
                for call in (
                    lambda: client.get("lost", b"k"),
                    lambda: client.put("lost", b"k", b"v2"),
                    lambda: client.compare_and_set("lost", b"k", b"v", b"v3"),
                    lambda: client.get_all("lost"),
                    client.ping,
                ):
                    started = time.monotonic()
                    with pytest.raises(GcsUnavailableError) as info:
                        await call()
                    elapsed = time.monotonic() - started
                    assert elapsed < UNAVAILABLE_BOUND, f"took {elapsed:.1f}s"
                    assert gcs_server.url in str(info.value), str(info.value)
            finally:
                gcs_server.start()
            # the same client works again once the server is back
            await client.ping()
            assert await client.get("lost", b"k") == b"v"

        run(body, client)

    def test_hung_server_raises_unavailable_in_bounded_time(
        self, store_factory: Callable[..., GcsStore] | None, gcs_server: Any
    ) -> None:
        if gcs_server is None or not hasattr(gcs_server, "pause"):
            # Nothing can hang without a server process; test_ping_and_close and
            # test_lost_server_raises_unavailable_in_bounded_time cover going away.
            return
        client = self._second(store_factory, retry_timeout=1.0, request_timeout=1.0)

        async def body() -> None:
            await client.put("hung", b"k", b"v")
            gcs_server.pause()  # connections stay open; nothing answers
            try:
                for call in (lambda: client.get("hung", b"k"), lambda: client.put("hung", b"k", b"v2")):
                    started = time.monotonic()
                    with pytest.raises(GcsUnavailableError):
                        await call()
                    elapsed = time.monotonic() - started
                    assert elapsed < UNAVAILABLE_BOUND, f"took {elapsed:.1f}s"
            finally:
                gcs_server.resume()
            deadline = time.monotonic() + 15
            while True:  # the same client recovers once the server answers again
                try:
                    await client.ping()
                    break
                except GcsUnavailableError:
                    if time.monotonic() > deadline:
                        raise
            assert await client.get("hung", b"k") in (b"v", b"v2")

        run(body, client)

    # -- watch ---------------------------------------------------------------------------
    def test_watch_delivers_every_change_in_order(
        self,
        store: GcsStore,
        store_factory: Callable[..., GcsStore] | None,
        registration: GcsStoreRegistration,
    ) -> None:
        if not _watch_applies(registration, store):
            return
        other = self._second(store_factory)

        async def body() -> None:
            scoped = await start_watch(store, "w", b"p/")
            everything = await start_watch(other, "w")
            await store.put("w", b"p/1", b"a")
            await other.put("w", b"p/2", b"b")
            await store.put("w", b"q/1", b"outside the prefix")
            await store.put("w", b"p/1", b"a2")
            await store.put("w", b"p/1", b"ignored", overwrite=False)  # no change, no event
            await other.compare_and_set("w", b"p/3", None, b"c")
            await other.compare_and_set("w", b"p/3", b"wrong", b"x")  # no change, no event
            await store.compare_and_set("w", b"p/3", b"c", b"c2")
            await store.delete("w", b"p/1")
            await store.delete("w", b"p/never")  # no change, no event
            await other.batch_delete("w", [b"p/2", b"p/3", b"p/missing"])
            await store.put("w", b"p/\x00\xff", b"\x00")
            await store.put("w", b"p/~end", b"")
            expected = [
                ("put", b"p/1", b"a"), ("put", b"p/2", b"b"), ("put", b"p/1", b"a2"),
                ("put", b"p/3", b"c"), ("put", b"p/3", b"c2"), ("delete", b"p/1", None),
                ("delete", b"p/2", None), ("delete", b"p/3", None),
                ("put", b"p/\x00\xff", b"\x00"), ("put", b"p/~end", b""),
            ]  # fmt: skip
            got = await scoped.until(b"p/~end")
            assert [(e.kind, e.key, e.value) for e in got] == expected
            assert all(e.table == "w" for e in got)
            got_all = await everything.until(b"p/~end")
            assert [(e.kind, e.key, e.value) for e in got_all if e.key.startswith(b"p/")] == expected
            assert ("put", b"q/1", b"outside the prefix") in [(e.kind, e.key, e.value) for e in got_all]
            await scoped.close()
            await everything.close()

        run(body, store, other)

    def test_watch_many_changes_in_order(
        self, store: GcsStore, registration: GcsStoreRegistration
    ) -> None:
        if not _watch_applies(registration, store):
            return

        async def body() -> None:
            reader = await start_watch(store, "wmany")
            n = 600

            async def writer(lane: int) -> None:
                for i in range(n // 3):
                    await store.put("wmany", b"lane%d" % lane, b"%d" % i)

            await asyncio.gather(*(writer(lane) for lane in range(3)))
            await store.put("wmany", b"~end", b"")
            got = await reader.until(b"~end", timeout=30)
            per_lane: dict[bytes, list[int]] = {}
            for e in got[:-1]:
                per_lane.setdefault(e.key, []).append(int(e.value or b"-1"))
            assert per_lane == {b"lane%d" % lane: list(range(n // 3)) for lane in range(3)}
            await reader.close()

        run(body, store, timeout=120)

    def test_watch_resumes_after_reconnect_without_losing_events(
        self,
        store: GcsStore,
        store_factory: Callable[..., GcsStore] | None,
        registration: GcsStoreRegistration,
        gcs_server: Any,
    ) -> None:
        if not _watch_applies(registration, store):
            return
        writer = self._second(store_factory)

        async def body() -> None:
            reader = await start_watch(store, "wr")
            for i in range(5):
                await writer.put("wr", b"k%d" % i, b"before")
            first = [await reader.next(15) for _ in range(5)]
            assert [e.key for e in first] == [b"k%d" % i for i in range(5)]
            # No read is pending now: the watch is idle while the connection goes away.
            if gcs_server is not None:
                gcs_server.restart()  # same port, same data: every connection is lost
            else:
                await writer.close()  # in-process: the writing client goes away instead
            late = self._second(store_factory)
            try:
                # Written before the watcher reconnects: a watch that restarted "from now"
                # instead of from its last event would miss these.
                for i in range(5, 10):
                    await late.put("wr", b"k%d" % i, b"after")
                await late.delete("wr", b"k0")
                await late.put("wr", b"~end", b"")
                rest = await reader.until(b"~end", timeout=30)
            finally:
                await late.close()
            assert [(e.kind, e.key, e.value) for e in rest] == [
                *(("put", b"k%d" % i, b"after") for i in range(5, 10)),
                ("delete", b"k0", None),
                ("put", b"~end", b""),
            ]
            await reader.close()

        run(body, store, writer, timeout=90)

    def test_watch_ends_when_store_closes(
        self, store: GcsStore, registration: GcsStoreRegistration
    ) -> None:
        if not _watch_applies(registration, store):
            return

        async def body() -> None:
            reader = await start_watch(store, "wc")
            pending = asyncio.ensure_future(reader.next(30))
            await asyncio.sleep(0)  # let the read start
            await store.close()
            started = time.monotonic()
            with pytest.raises((StopAsyncIteration, GcsUnavailableError)):
                await pending
            assert time.monotonic() - started < 5.0

        run(body, store)
