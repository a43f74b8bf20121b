"""``GcsStoreContract``: the tests every ``GcsStore`` backend must pass.

Subclass it and provide fixtures (fsspec style)::

    import pytest
    from microray.testing.contracts import GcsStoreContract

    class TestMyStore(GcsStoreContract):
        @pytest.fixture
        def registration(self):
            return MY_REGISTRATION            # a GcsStoreRegistration

        @pytest.fixture
        def store_factory(self, my_server):
            ns = f"t-{uuid.uuid4().hex[:8]}"  # a fresh, empty namespace per test
            def open_client(namespace=None, **options):
                return MyStore(url=my_server.url, namespace=namespace or ns, **options)
            return open_client

Fixtures:

``registration`` (required)
    The backend's ``GcsStoreRegistration``; its ``capabilities`` decide what
    is tested: with ``watch`` the watch tests run, without it ``watch`` must
    raise ``NotImplementedError``; with ``persistence`` data must survive a
    reconnect (and a server restart when ``gcs_server`` is given), without it
    a fresh store built with the same options must start empty.
``store``
    A fresh, empty store. Defaults to ``store_factory()``.
``store_factory`` (optional, needed by the multi-client tests)
    ``store_factory(namespace=None, **options)`` opens *another client* on the
    same backend, in the same namespace as ``store`` unless ``namespace`` is
    given; ``options`` override the store's options (``retry_timeout``).
``store_options`` (optional)
    The options ``store`` was built with; used to build a fresh store from
    ``registration.factory`` for the no-persistence check.
``gcs_server`` (optional)
    The server process behind the store, with ``stop()``, ``start()``,
    ``restart()`` and ``url`` (``microray.testing.servers.ServerProcess``).
    Enables the tests that lose the server: bounded ``GcsUnavailableError``,
    watch resuming after a restart without losing events, data surviving a
    restart. The fixture should leave the server running at teardown. A
    replicated server also has ``members`` (each with ``kill()`` and
    ``start()``, e.g. ``microray.testing.secure_servers.EtcdCluster``): then
    each member is killed in turn under load, and no call may fail and nothing
    may be lost (``gcs_store_replicas``).

Tests run without pytest-asyncio: each test body runs in one ``asyncio.run``
that also closes every store it used, so a backend may bind its connections
to the loop it is first used in. Stores must accept being created outside a
running loop (connect lazily).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from microray.exceptions import ConfigError, GcsUnavailableError
from microray.interfaces.gcs_store import GcsStore
from microray.registrations import GcsStoreRegistration
from microray.testing.contracts._gcs_store_support import (
    TEN_MB,
    WatchReader,
    _caps,
    run,
    start_watch,
)
from microray.testing.contracts.gcs_store_replicas import GcsStoreReplicaTests
from microray.testing.contracts.gcs_store_resilience import GcsStoreResilienceTests

__all__ = ["GcsStoreContract", "WatchReader"]


class GcsStoreContract(GcsStoreResilienceTests, GcsStoreReplicaTests):
    """Subclass with the fixtures described in the module docstring."""

    # -- fixtures a subclass provides -------------------------------------------
    @pytest.fixture
    def registration(self) -> GcsStoreRegistration:
        raise NotImplementedError("GcsStoreContract needs a `registration` fixture")

    @pytest.fixture
    def store_factory(self) -> Callable[..., GcsStore] | None:
        return None

    @pytest.fixture
    def store(self, store_factory: Callable[..., GcsStore] | None) -> Any:
        if store_factory is None:
            raise NotImplementedError("GcsStoreContract needs a `store` or `store_factory` fixture")
        store = store_factory()
        yield store
        asyncio.run(store.close())

    @pytest.fixture
    def store_options(self) -> dict[str, Any] | None:
        return None

    @pytest.fixture
    def gcs_server(self) -> Any:
        return None

    @staticmethod
    def _second(store_factory: Callable[..., GcsStore] | None, **kwargs: Any) -> GcsStore:
        if store_factory is None:
            pytest.skip("needs a `store_factory` fixture (a second client on the same backend)")
        return store_factory(**kwargs)

    # -- basic key/value ----------------------------------------------------------
    def test_put_get_and_overwrite(self, store: GcsStore) -> None:
        async def body() -> None:
            assert await store.get("kv", b"k") is None
            assert await store.put("kv", b"k", b"v1") is True  # newly added
            assert await store.get("kv", b"k") == b"v1"
            assert await store.put("kv", b"k", b"v2") is False  # replaced, not added
            assert await store.get("kv", b"k") == b"v2"
            assert await store.put("kv", b"k", b"v3", overwrite=False) is False
            assert await store.get("kv", b"k") == b"v2"  # left as it was
            assert await store.put("kv", b"new", b"n", overwrite=False) is True
            assert await store.get("kv", b"new") == b"n"
            assert await store.put("kv", b"empty", b"") is True
            assert await store.get("kv", b"empty") == b""  # empty value is not "absent"
            assert await store.exists("kv", b"empty") is True

        run(body, store)

    def test_tables_are_separate(self, store: GcsStore) -> None:
        async def body() -> None:
            await store.put("ta", b"k", b"a")
            await store.put("tb", b"k", b"b")
            assert await store.get("ta", b"k") == b"a"
            assert await store.get("tb", b"k") == b"b"
            assert await store.get_all("ta") == {b"k": b"a"}
            assert await store.delete("ta", b"k") is True
            assert await store.get("tb", b"k") == b"b"
            assert await store.get_all("empty_table") == {}

        run(body, store)

    def test_multi_get(self, store: GcsStore) -> None:
        async def body() -> None:
            for i in range(5):
                await store.put("mg", b"k%d" % i, b"v%d" % i)
            got = await store.multi_get("mg", [b"k1", b"missing", b"k3", b"k1"])
            assert got == {b"k1": b"v1", b"k3": b"v3"}
            assert await store.multi_get("mg", []) == {}
            assert await store.multi_get("mg", [b"nope"]) == {}
            many = [b"k%d" % i for i in range(300)]  # more than one batch in some backends
            assert await store.multi_get("mg", many) == {b"k%d" % i: b"v%d" % i for i in range(5)}

        run(body, store)

    def test_get_all_is_sorted_and_prefix_filtered(self, store: GcsStore) -> None:
        keys = [b"", b"\x00", b"\x00\x01", b"a", b"a\x00", b"a\xff", b"ab", b"a*", b"a?",
                b"[x]", b"b", b"\x7f", b"\x80", b"\xff", b"\xff\xff"]  # fmt: skip
        shuffled = keys[:]
        random.Random(7).shuffle(shuffled)

        async def body() -> None:
            for k in shuffled:
                await store.put("scan", k, b"v:" + k)
            everything = await store.get_all("scan")
            assert list(everything) == sorted(keys)  # ascending byte order
            assert everything == {k: b"v:" + k for k in keys}
            for prefix in (b"a", b"a*", b"\x00", b"\xff", b"[", b"zz", b"a\x00"):
                got = await store.get_all("scan", prefix)
                assert list(got) == sorted(k for k in keys if k.startswith(prefix)), prefix

        run(body, store)

    def test_get_all_many_keys(self, store: GcsStore) -> None:
        async def body() -> None:
            expected = {b"row/%05d" % i: os.urandom(16) for i in range(1200)}
            for k, v in expected.items():
                await store.put("many", k, v)
            await store.put("many", b"other", b"x")
            got = await store.get_all("many", b"row/")
            assert got == expected
            assert list(got) == sorted(expected)

        run(body, store, timeout=120)

    def test_binary_keys_and_values(self, store: GcsStore) -> None:
        keys = [b"\x00", b"\x00\x00", b"\xff\xfe", b"\x80abc", b"a\r\nb", b" ", b"\xc3\x28", b"k/\x00/z"]
        value = bytes(range(256)) * 4

        async def body() -> None:
            for i, k in enumerate(keys):
                assert await store.put("bin", k, value + bytes([i])) is True
            for i, k in enumerate(keys):
                assert await store.get("bin", k) == value + bytes([i])
                assert await store.exists("bin", k)
            assert set(await store.multi_get("bin", keys)) == set(keys)
            assert list(await store.get_all("bin")) == sorted(keys)
            assert await store.get("bin", b"\x00\x00\x00") is None  # no prefix confusion
            assert await store.delete("bin", b"\x00") is True
            assert await store.get("bin", b"\x00\x00") == value + bytes([1])

        run(body, store)

    def test_ten_megabyte_values(self, store: GcsStore) -> None:
        big = os.urandom(TEN_MB)
        bigger = big[::-1]

        async def body() -> None:
            assert await store.put("big", b"blob", big) is True
            assert await store.get("big", b"blob") == big
            assert await store.multi_get("big", [b"blob"]) == {b"blob": big}
            assert await store.get_all("big") == {b"blob": big}
            assert await store.compare_and_set("big", b"blob", bigger, b"x") is False
            assert await store.compare_and_set("big", b"blob", big, bigger) is True
            assert await store.get("big", b"blob") == bigger
            assert await store.put("big", b"blob2", big) is True
            assert await store.get_all("big") == {b"blob": bigger, b"blob2": big}

        run(body, store, timeout=120)

    def test_delete_and_batch_delete(self, store: GcsStore) -> None:
        async def body() -> None:
            for k in (b"a", b"b", b"c", b"d"):
                await store.put("del", k, k)
            assert await store.delete("del", b"a") is True
            assert await store.delete("del", b"a") is False
            assert await store.delete("del", b"never") is False
            assert await store.batch_delete("del", [b"b", b"c", b"b", b"missing"]) == 2
            assert await store.batch_delete("del", []) == 0
            assert await store.get_all("del") == {b"d": b"d"}
            assert not await store.exists("del", b"b")
            many = [b"m%d" % i for i in range(300)]
            for k in many:
                await store.put("del", k, b"")
            assert await store.batch_delete("del", many + [b"d"]) == 301
            assert await store.get_all("del") == {}

        run(body, store)

    def test_exists(self, store: GcsStore) -> None:
        async def body() -> None:
            assert await store.exists("ex", b"k") is False
            await store.put("ex", b"k", b"v")
            assert await store.exists("ex", b"k") is True
            assert await store.exists("ex", b"k2") is False
            assert await store.exists("other", b"k") is False
            await store.delete("ex", b"k")
            assert await store.exists("ex", b"k") is False

        run(body, store)

    # -- compare_and_set -------------------------------------------------------------
    def test_compare_and_set_semantics(self, store: GcsStore) -> None:
        async def body() -> None:
            assert await store.compare_and_set("cas", b"k", None, b"v1") is True  # absent -> set
            assert await store.compare_and_set("cas", b"k", None, b"v2") is False  # now present
            assert await store.get("cas", b"k") == b"v1"
            assert await store.compare_and_set("cas", b"k", b"wrong", b"v2") is False
            assert await store.get("cas", b"k") == b"v1"
            assert await store.compare_and_set("cas", b"k", b"v1", b"v2") is True
            assert await store.get("cas", b"k") == b"v2"
            # "absent" and "empty value" are different things
            assert await store.compare_and_set("cas", b"e", b"", b"x") is False
            assert not await store.exists("cas", b"e")
            await store.put("cas", b"e", b"")
            assert await store.compare_and_set("cas", b"e", None, b"x") is False
            assert await store.compare_and_set("cas", b"e", b"", b"x") is True
            assert await store.get("cas", b"e") == b"x"
            # a deleted key is absent again
            await store.delete("cas", b"k")
            assert await store.compare_and_set("cas", b"k", b"v2", b"v3") is False
            assert await store.compare_and_set("cas", b"k", None, b"v3") is True

        run(body, store)

    def test_compare_and_set_one_winner_between_two_clients(
        self, store: GcsStore, store_factory: Callable[..., GcsStore] | None
    ) -> None:
        other = self._second(store_factory)

        async def body() -> None:
            for round_ in range(10):
                key = b"race%d" % round_
                attempts = [
                    client.compare_and_set("cas", key, None, b"%s-%d" % (name, i))
                    for i in range(4)
                    for name, client in ((b"a", store), (b"b", other))
                ]
                results = await asyncio.gather(*attempts)
                assert sum(results) == 1, results
                winner = await store.get("cas", key)
                assert await other.get("cas", key) == winner
                assert winner is not None

        run(body, store, other)

    def test_compare_and_set_counter_has_no_lost_updates(
        self, store: GcsStore, store_factory: Callable[..., GcsStore] | None
    ) -> None:
        other = self._second(store_factory)
        target = 60

        async def body() -> None:
            assert await store.compare_and_set("ctr", b"n", None, b"0")
            wins = {"a": 0, "b": 0}
            losses = 0

            async def worker(name: str, client: GcsStore, seed: int) -> None:
                nonlocal losses
                rng = random.Random(seed)
                while sum(wins.values()) < target:
                    current = await client.get("ctr", b"n")
                    assert current is not None
                    for _ in range(rng.randint(0, 3)):  # interleave even in-process stores
                        await asyncio.sleep(0)
                    if await client.compare_and_set("ctr", b"n", current, b"%d" % (int(current) + 1)):
                        wins[name] += 1
                    else:
                        losses += 1

            await asyncio.gather(
                *(worker("a", store, i) for i in range(3)),
                *(worker("b", other, 10 + i) for i in range(3)),
            )
            final = int(await other.get("ctr", b"n") or b"-1")
            assert final == wins["a"] + wins["b"], (final, wins, losses)
            assert final >= target
            assert wins["a"] > 0 and wins["b"] > 0, wins
            assert losses > 0, "the workers never contended; the test proved nothing"

        run(body, store, other, timeout=120)

    # -- clients, namespaces, schema, lifecycle ----------------------------------------
    def test_second_client_sees_writes(
        self, store: GcsStore, store_factory: Callable[..., GcsStore] | None
    ) -> None:
        other = self._second(store_factory)

        async def body() -> None:
            await store.put("shared", b"k", b"from-1")
            assert await other.get("shared", b"k") == b"from-1"
            await other.put("shared", b"k", b"from-2")
            assert await store.get("shared", b"k") == b"from-2"

        run(body, store, other)

    def test_namespaces_are_isolated(
        self,
        store: GcsStore,
        store_factory: Callable[..., GcsStore] | None,
        registration: GcsStoreRegistration,
    ) -> None:
        neighbour = self._second(store_factory, namespace=f"other-{uuid.uuid4().hex[:8]}")
        has_watch = "watch" in _caps(registration)

        async def body() -> None:
            reader = await start_watch(neighbour, "iso") if has_watch else None
            await store.put("iso", b"k", b"mine")
            await neighbour.put("iso", b"k", b"theirs")
            await store.put("iso", b"only-mine", b"1")
            assert await store.get("iso", b"k") == b"mine"
            assert await neighbour.get("iso", b"k") == b"theirs"
            assert await neighbour.get("iso", b"only-mine") is None
            assert not await neighbour.exists("iso", b"only-mine")
            assert await store.get_all("iso") == {b"k": b"mine", b"only-mine": b"1"}
            assert await store.delete("iso", b"k") is True
            assert await neighbour.get("iso", b"k") == b"theirs"
            assert await neighbour.compare_and_set("iso", b"only-mine", None, b"2") is True
            assert await store.get("iso", b"only-mine") == b"1"
            if reader is not None:
                await neighbour.put("iso", b"~end", b"")
                seen = await reader.until(b"~end")
                # the neighbour's watch saw only the neighbour's own changes
                assert [(e.kind, e.key, e.value) for e in seen] == [
                    ("put", b"k", b"theirs"), ("put", b"only-mine", b"2"), ("put", b"~end", b""),
                ]  # fmt: skip
                await reader.close()

        run(body, store, neighbour)

    def test_schema_version_check(
        self, store: GcsStore, store_factory: Callable[..., GcsStore] | None
    ) -> None:
        other = self._second(store_factory)
        fresh = self._second(store_factory, namespace=f"fresh-{uuid.uuid4().hex[:8]}")

        async def body() -> None:
            await store.check_schema(3)  # first use records it
            await store.check_schema(3)
            await other.check_schema(3)
            with pytest.raises(ConfigError) as info:
                await other.check_schema(4)
            assert "3" in str(info.value) and "4" in str(info.value)
            await fresh.check_schema(4)  # another namespace has its own version
            with pytest.raises(ConfigError):
                await fresh.check_schema(3)

        run(body, store, other, fresh)

    def test_ping_and_close(self, store: GcsStore) -> None:
        async def body() -> None:
            await store.ping()
            await store.put("life", b"k", b"v")
            await store.close()
            await store.close()  # twice is harmless
            started = time.monotonic()
            with pytest.raises(GcsUnavailableError):
                await store.get("life", b"k")  # a closed store is unavailable, promptly
            assert time.monotonic() - started < 2.0

        run(body, store)
