"""Every shipped GCS store passes ``GcsStoreContract`` against a real server.

memory runs in process; redis and etcd run against real ``redis-server`` and
``etcd`` processes (session fixtures from ``microray.testing.servers``) — no
mocks. Tests that stop or restart a server get it back running afterwards.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from microray.backends.gcs import etcd as etcd_backend
from microray.backends.gcs import memory as memory_backend
from microray.backends.gcs import redis as redis_backend
from microray.exceptions import ConfigError, GcsUnavailableError
from microray.registrations import GcsStoreRegistration
from microray.testing.contracts import GcsStoreContract
from microray.testing.secure_servers import EtcdCluster
from microray.testing.servers import EtcdServer, RedisServer, ServerProcess, free_port


def _registration(module: Any) -> GcsStoreRegistration:
    (registration,) = module.microray_gcs_stores()
    return registration


def _build(registration: GcsStoreRegistration, **options: Any) -> Any:
    return registration.factory(**registration.validate_options("gcs_store", options))


def _namespace() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


class TestMemoryGcsStore(GcsStoreContract):
    @pytest.fixture
    def registration(self) -> GcsStoreRegistration:
        return _registration(memory_backend)

    @pytest.fixture
    def store_options(self) -> dict[str, Any]:
        return {"namespace": _namespace()}

    @pytest.fixture
    def store(self, registration: GcsStoreRegistration, store_options: dict[str, Any]) -> Iterator[Any]:
        store = _build(registration, **store_options)
        yield store
        asyncio.run(store.close())

    @pytest.fixture
    def store_factory(self, store: Any) -> Callable[..., Any]:
        def open_client(namespace: str | None = None, **options: Any) -> Any:
            return store.open_client(namespace)  # same in-memory data; no options to vary

        return open_client


class _ServerBackedContract(GcsStoreContract):
    """Shared fixtures for backends with a server process."""

    backend: Any = None

    @pytest.fixture
    def registration(self) -> GcsStoreRegistration:
        return _registration(self.backend)

    @pytest.fixture
    def server(self) -> ServerProcess:
        raise NotImplementedError

    @pytest.fixture
    def gcs_server(self, server: ServerProcess) -> Iterator[ServerProcess]:
        yield server
        server.ensure_running()  # a test that stopped it must not break the next one

    @pytest.fixture
    def store_options(self, server: ServerProcess) -> dict[str, Any]:
        return {"url": server.url, "namespace": _namespace()}

    @pytest.fixture
    def store_factory(
        self, registration: GcsStoreRegistration, store_options: dict[str, Any]
    ) -> Callable[..., Any]:
        def open_client(namespace: str | None = None, **options: Any) -> Any:
            merged = {**store_options, **options}
            if namespace is not None:
                merged["namespace"] = namespace
            return _build(registration, **merged)

        return open_client


class TestRedisGcsStore(_ServerBackedContract):
    backend = redis_backend

    @pytest.fixture
    def server(self, redis_server: RedisServer) -> RedisServer:
        return redis_server.ensure_running()


class TestEtcdGcsStore(_ServerBackedContract):
    backend = etcd_backend

    @pytest.fixture
    def server(self, etcd_server: EtcdServer) -> EtcdServer:
        return etcd_server.ensure_running()


class TestEtcdClusterGcsStore(_ServerBackedContract):
    """A 3-member etcd cluster: the whole contract, and each member killed under load."""

    backend = etcd_backend

    @pytest.fixture
    def server(self, etcd_cluster: EtcdCluster) -> EtcdCluster:
        return etcd_cluster.ensure_running()

    @pytest.fixture
    def store_options(self, server: EtcdCluster) -> dict[str, Any]:
        return {"endpoints": server.urls, "namespace": _namespace()}


class TestEtcdSecureGcsStore(_ServerBackedContract):
    """etcd with TLS, a required client certificate and user/password auth."""

    backend = etcd_backend

    @pytest.fixture
    def server(self, etcd_secure_server: EtcdServer) -> EtcdServer:
        return etcd_secure_server.ensure_running()

    @pytest.fixture
    def store_options(self, server: Any) -> dict[str, Any]:
        user, password = server.auth
        certs = server.certs
        return {
            "url": server.url, "namespace": _namespace(), "user": user, "password": password,
            "ca_file": certs.ca, "cert_file": certs.client_cert, "key_file": certs.client_key,
        }  # fmt: skip


class _PlainUrl:
    """A server whose ``url`` is shown without its password (as the store's errors show it)."""

    def __init__(self, server: RedisServer) -> None:
        self._server = server
        self.url = server.plain_url

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class TestRedisSecureGcsStore(_ServerBackedContract):
    """Redis over TLS (rediss://) with a password given as the ``password`` option."""

    backend = redis_backend

    @pytest.fixture
    def server(self, redis_secure_server: RedisServer) -> Any:
        return _PlainUrl(redis_secure_server.ensure_running())

    @pytest.fixture
    def store_options(self, server: Any) -> dict[str, Any]:
        return {"url": server.plain_url, "password": server.password, "ca_file": server.certs.ca,
                "namespace": _namespace()}  # fmt: skip


# ---------------------------------------------------------------------------
# backend-specific checks that are not part of the generic contract
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "url"),
    [
        (redis_backend, "redis://127.0.0.1:{port}/0"),
        (etcd_backend, "http://127.0.0.1:{port}"),
    ],
    ids=["redis", "etcd"],
)
def test_unreachable_url_fails_fast_with_url_and_cause(module: Any, url: str) -> None:
    """With default options, ``ping`` on a dead address fails within a few seconds,
    naming the URL and the connection error."""
    url = url.format(port=free_port())
    store = _build(_registration(module), url=url, namespace="ping")

    async def body() -> None:
        started = time.monotonic()
        with pytest.raises(GcsUnavailableError) as info:
            await store.ping()
        elapsed = time.monotonic() - started
        message = str(info.value)
        assert elapsed < 8.0, elapsed
        assert url in message, message
        assert "refused" in message.lower(), message
        await store.close()

    asyncio.run(body())


def test_redis_watch_survives_killed_connections(redis_server: RedisServer) -> None:
    """``CLIENT KILL`` drops every connection (the watcher's too) without a restart;
    the watch reconnects and resumes from its last event."""
    import redis.asyncio

    from microray.testing.contracts.gcs_store import start_watch

    namespace = _namespace()
    store = _build(_registration(redis_backend), url=redis_server.url, namespace=namespace)

    async def body() -> None:
        admin = redis.asyncio.from_url(redis_server.url)
        reader = await start_watch(store, "kill")
        await store.put("kill", b"a", b"1")
        assert (await reader.next(10)).key == b"a"
        killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert killed >= 1
        await admin.hset(f"{namespace}:kill", b"untracked", b"x")  # raw write: no event
        for i in range(3):
            await store.put("kill", b"b%d" % i, b"2")
        await store.put("kill", b"~end", b"")
        seen = await reader.until(b"~end")
        assert [e.key for e in seen] == [b"b0", b"b1", b"b2", b"~end"]
        await reader.close()
        await admin.aclose()
        await store.close()

    asyncio.run(body())


def test_redis_watch_reports_trimmed_history(redis_server: RedisServer) -> None:
    """A watcher away for longer than ``watch_history`` changes gets an error, not a gap."""
    from microray.testing.contracts.gcs_store import start_watch

    registration = _registration(redis_backend)
    options = {"url": redis_server.url, "namespace": _namespace(), "watch_history": 10}
    watcher, writer = _build(registration, **options), _build(registration, **options)

    async def body() -> None:
        reader = await start_watch(watcher, "trim")
        await writer.put("trim", b"first", b"")
        assert (await reader.next(10)).key == b"first"
        # Trimmed while the watcher is idle, then ask for more.
        for i in range(500):
            await writer.put("trim", b"k", b"%d" % i)
        with pytest.raises(GcsUnavailableError, match="lost"):
            while True:
                await reader.next(10)
        await reader.close()
        await watcher.close()
        await writer.close()

    asyncio.run(body())


def test_etcd_refuses_requests_over_the_wal_limit(etcd_server: EtcdServer) -> None:
    """etcd < 3.5.5 cannot restart with a WAL entry over 10 MiB: the client refuses
    such writes before sending, and the server still restarts fine afterwards."""
    store = _build(_registration(etcd_backend), url=etcd_server.url, namespace=_namespace())

    async def body() -> None:
        with pytest.raises(etcd_backend.EtcdRequestTooLargeError, match="max_request_bytes"):
            await store.put("big", b"k", b"x" * (10 * 1024 * 1024))
        await store.put("big", b"k", b"x" * 10_000_000)
        await store.close()

    asyncio.run(body())
    etcd_server.restart()


@pytest.mark.parametrize("module", [memory_backend, redis_backend, etcd_backend], ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_registration_options(module: Any) -> None:
    registration = _registration(module)
    assert registration.name == module.__name__.rsplit(".", 1)[-1]
    assert "namespace" in registration.options
    assert "watch" in registration.capabilities
    with pytest.raises(ConfigError, match="namespace"):
        registration.validate_options("gcs_store", {"namespace": 3})
    if "retry_timeout" in registration.options:  # TOML ints are accepted for float options
        assert registration.validate_options("gcs_store", {"retry_timeout": 2})["retry_timeout"] == 2.0
    with pytest.raises(ValueError, match="namespace"):
        _build(registration, namespace="has/slash:colon")


def test_bad_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="redis://"):
        _build(_registration(redis_backend), url="http://127.0.0.1:6379")
    with pytest.raises(ConfigError, match="http://host:port"):
        _build(_registration(etcd_backend), url="redis://127.0.0.1:2379")


def test_importing_backends_does_not_import_clients_and_protos_coexist() -> None:
    """Importing the backend modules imports neither redis nor pyetcd; pyetcd's
    generated protos load after grpc and every microray protocol module."""
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import microray.backends.gcs.memory, microray.backends.gcs.redis, microray.backends.gcs.etcd
        assert "redis" not in sys.modules, "redis imported at module import"
        assert "pyetcd" not in sys.modules, "pyetcd imported at module import"
        import grpc
        import microray.protocol as protocol
        for info in pkgutil.walk_packages(protocol.__path__, "microray.protocol."):
            importlib.import_module(info.name)
        import pyetcd
        from pyetcd import etcdrpc
        assert etcdrpc.KVStub and etcdrpc.WatchStub
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_entry_points_provide_the_three_stores() -> None:
    """The built-in stores arrive through the same entry-point group as third-party ones."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="microray")}
    for ep_name, store_name, module in (
        ("gcs_memory", "memory", memory_backend),
        ("gcs_redis", "redis", redis_backend),
        ("gcs_etcd", "etcd", etcd_backend),
    ):
        loaded = found[ep_name].load()
        assert loaded is module
        assert [r.name for r in loaded.microray_gcs_stores()] == [store_name]
