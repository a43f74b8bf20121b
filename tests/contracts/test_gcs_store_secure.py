"""etcd and Redis GCS stores beyond one plain server: several etcd members with failover,
etcd user/password auth and TLS, Redis over TLS with a password. Real servers throughout
(``microray.testing.servers`` fixtures); the generic contract runs on these servers too
(``test_gcs_store.py``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from microray.backends.gcs import etcd as etcd_backend
from microray.backends.gcs import redis as redis_backend
from microray.exceptions import ConfigError, GcsUnavailableError
from microray.testing.contracts.gcs_store import start_watch
from microray.testing.secure_servers import EtcdCluster
from microray.testing.servers import EtcdServer, RedisServer


def _build(module: Any, **options: Any) -> Any:
    (registration,) = module.microray_gcs_stores()
    return registration.factory(**registration.validate_options("gcs_store", options))


def _namespace() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def _tls(server: Any, client_cert: bool = True) -> dict[str, str]:
    certs = server.certs
    files = {"ca_file": certs.ca}
    if client_cert:
        files.update(cert_file=certs.client_cert, key_file=certs.client_key)
    return files


# -- several etcd members ------------------------------------------------------------------------
@pytest.mark.parametrize("given", ["endpoints", "url list", "url commas"])
def test_etcd_members_can_be_given_three_ways(etcd_cluster: EtcdCluster, given: str) -> None:
    urls = etcd_cluster.ensure_running().urls
    options: dict[str, Any] = {
        "endpoints": {"endpoints": urls},
        "url list": {"url": urls},
        "url commas": {"url": ",".join(urls)},
    }[given]
    store = _build(etcd_backend, namespace=_namespace(), **options)
    assert store.url == ",".join(urls) and store.current_member == urls[0]

    async def body() -> None:
        await store.put("t", b"k", b"v")
        assert await store.get("t", b"k") == b"v"
        await store.close()

    asyncio.run(body())


def test_etcd_member_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="both 'url' and 'endpoints'"):
        _build(etcd_backend, url="http://127.0.0.1:1", endpoints=["http://127.0.0.1:2"])
    with pytest.raises(ConfigError, match="mix http:// and https://"):
        _build(etcd_backend, endpoints="http://127.0.0.1:1,https://127.0.0.1:2")
    with pytest.raises(ConfigError, match="listed twice"):
        _build(etcd_backend, endpoints=["http://127.0.0.1:1", "http://127.0.0.1:1"])
    with pytest.raises(ConfigError, match="user and password go in"):
        _build(etcd_backend, url="http://root:hunter2@127.0.0.1:1")
    with pytest.raises(ConfigError, match="endpoints") as info:
        _build(etcd_backend, endpoints=3)
    assert "expected" in str(info.value)
    with pytest.raises(ConfigError, match="https://"):
        _build(etcd_backend, url="http://127.0.0.1:1", ca_file="/nonexistent.pem")
    with pytest.raises(ConfigError, match="ca_file: cannot read '/nonexistent.pem'"):
        _build(etcd_backend, url="https://127.0.0.1:1", ca_file="/nonexistent.pem")
    with pytest.raises(ConfigError, match="both cert_file and key_file"):
        _build(etcd_backend, url="https://127.0.0.1:1", cert_file="/x.pem")
    with pytest.raises(ConfigError, match="without 'user'"):
        _build(etcd_backend, password="secret")
    assert _build(etcd_backend).url == "http://127.0.0.1:2379"


def test_etcd_fails_over_when_its_member_the_leader_is_killed(etcd_cluster: EtcdCluster) -> None:
    """With default options, the client talks to the leader; SIGKILL it under load: every call
    succeeds (on another member), the watch loses no event, and the client stays usable once
    the member is back."""
    etcd_cluster.ensure_running()
    leader = etcd_cluster.leader()
    endpoints = [leader.url, *(m.url for m in etcd_cluster.members if m is not leader)]
    namespace = _namespace()
    store = _build(etcd_backend, endpoints=endpoints, namespace=namespace)
    watcher = _build(etcd_backend, endpoints=endpoints, namespace=namespace)

    async def body() -> None:
        reader = await start_watch(watcher, "fo")
        done: list[int] = []

        async def load() -> None:
            for i in range(10**9):
                if len(done) >= 400 or (killed_at and len(done) >= killed_at + 100):
                    return
                assert await store.compare_and_set("fo", b"k%05d" % i, None, b"%d" % i)
                assert await store.get("fo", b"k%05d" % i) == b"%d" % i
                done.append(i)

        killed_at = 0
        task = asyncio.ensure_future(load())
        while len(done) < 20 and not task.done():
            await asyncio.sleep(0.01)
        assert store.current_member == leader.url and watcher.current_member == leader.url
        await asyncio.to_thread(leader.kill)
        killed_at = len(done)
        await asyncio.wait_for(task, 120)
        assert len(done) >= killed_at + 100  # served while the member was dead
        assert store.current_member != leader.url
        await store.put("fo", b"~end", b"")
        events = await reader.until(b"~end", timeout=60)
        assert [e.key for e in events] == [*(b"k%05d" % i for i in done), b"~end"]
        assert watcher.current_member != leader.url  # the watch moved on too
        stored = await store.get_all("fo")
        assert sorted(k for k in stored if k.startswith(b"k")) == [b"k%05d" % i for i in done]
        await reader.close()

    try:
        asyncio.run(body())
    finally:
        asyncio.run(store.close())
        asyncio.run(watcher.close())
        leader.ensure_running()


def test_etcd_whole_cluster_down_names_every_member(etcd_cluster: EtcdCluster) -> None:
    """All members stopped: GcsUnavailableError within retry_timeout, naming the members."""
    etcd_cluster.ensure_running()
    store = _build(etcd_backend, endpoints=etcd_cluster.urls, namespace=_namespace(), retry_timeout=1.0)

    async def body() -> None:
        await store.put("down", b"k", b"v")
        etcd_cluster.stop()
        started = time.monotonic()
        with pytest.raises(GcsUnavailableError) as info:
            await store.get("down", b"k")
        assert time.monotonic() - started < 8
        assert etcd_cluster.url in str(info.value)
        etcd_cluster.start()
        assert await store.get("down", b"k") == b"v"
        await store.close()

    try:
        asyncio.run(body())
    finally:
        etcd_cluster.ensure_running()


# -- etcd auth and TLS ---------------------------------------------------------------------------
def test_etcd_auth_and_tls_secrets_never_show(etcd_secure_server: EtcdServer) -> None:
    server = etcd_secure_server.ensure_running()
    user, password = server.auth  # type: ignore[attr-defined]
    (registration,) = etcd_backend.microray_gcs_stores()
    assert registration.options["password"].secret
    good = _build(etcd_backend, url=server.url, user=user, password=password, **_tls(server))
    wrong = _build(etcd_backend, url=server.url, user=user, password="not-" + password, **_tls(server))
    no_user = _build(etcd_backend, url=server.url, retry_timeout=1.0, **_tls(server))
    no_cert = _build(etcd_backend, url=server.url, user=user, password=password, retry_timeout=1.0,
                     **_tls(server, client_cert=False))  # fmt: skip

    async def body() -> None:
        await good.put("auth", b"k", b"v")
        assert await good.get("auth", b"k") == b"v"
        with pytest.raises(ConfigError, match=f"etcd refused user '{user}'") as refused:
            await wrong.get("auth", b"k")
        with pytest.raises(GcsUnavailableError, match="PERMISSION_DENIED|user name"):
            await no_user.get("auth", b"k")  # no token: etcd refuses the call
        with pytest.raises(GcsUnavailableError) as tls:
            await no_cert.get("auth", b"k")  # the member requires a client certificate
        for text in (str(refused.value), str(tls.value), repr(good), repr(wrong)):
            assert password not in text, text
        for store in (good, wrong, no_user, no_cert):
            await store.close()

    asyncio.run(body())


def test_etcd_auth_token_is_renewed_after_a_restart(etcd_secure_server: EtcdServer) -> None:
    """etcd forgets its simple tokens when it restarts: the client authenticates again and the
    same store keeps working, watch included."""
    server = etcd_secure_server.ensure_running()
    user, password = server.auth  # type: ignore[attr-defined]
    store = _build(etcd_backend, url=server.url, user=user, password=password, namespace=_namespace(),
                   **_tls(server))  # fmt: skip

    async def body() -> None:
        reader = await start_watch(store, "tok")
        await store.put("tok", b"a", b"1")
        token = store._conn.token
        assert token and (await reader.next(15)).key == b"a"
        server.restart()
        await store.put("tok", b"b", b"2")
        assert store._conn.token and store._conn.token != token
        assert [e.key for e in await reader.until(b"b", timeout=30)] == [b"b"]
        await reader.close()
        await store.close()

    asyncio.run(body())


# -- Redis TLS and password -----------------------------------------------------------------------
@pytest.mark.parametrize("given", ["in the url", "as an option"])
def test_redis_tls_with_password(redis_secure_server: RedisServer, given: str) -> None:
    server = redis_secure_server.ensure_running()
    (registration,) = redis_backend.microray_gcs_stores()
    assert registration.options["password"].secret
    if given == "in the url":
        store = _build(redis_backend, url=server.url, ca_file=server.certs.ca, namespace=_namespace())
    else:
        store = _build(redis_backend, url=server.plain_url, password=server.password, ca_file=server.certs.ca,
                       namespace=_namespace())  # fmt: skip
    assert server.password not in repr(store)

    async def body() -> None:
        await store.put("tls", b"k", b"v")
        assert await store.get("tls", b"k") == b"v"
        await store.close()

    asyncio.run(body())


def test_redis_refusals_name_the_cause_not_the_password(redis_secure_server: RedisServer) -> None:
    server = redis_secure_server.ensure_running()
    base = {"namespace": _namespace(), "retry_timeout": 1.0}
    wrong = _build(redis_backend, url=server.plain_url, password="not-" + server.password,
                   ca_file=server.certs.ca, **base)  # fmt: skip
    untrusted = _build(redis_backend, url=server.url, **base)  # no ca_file: the test CA is unknown
    plain = _build(redis_backend, url=server.url.replace("rediss://", "redis://"), **base)

    async def body() -> None:
        messages = []
        for store, cause in ((wrong, "WRONGPASS|invalid username-password"),
                             (untrusted, "CERTIFICATE_VERIFY_FAILED"), (plain, "")):  # fmt: skip
            with pytest.raises(Exception) as info:  # noqa: PT011 -- the type differs by cause
                await store.get("t", b"k")
            messages.append(f"{info.value} {info.value!r}")
            if cause:
                assert any(c in messages[-1] for c in cause.split("|")), messages[-1]
            await store.close()
        for text in messages:
            assert server.password not in text, text

    asyncio.run(body())
    with pytest.raises(ConfigError, match="rediss://"):
        _build(redis_backend, url=server.plain_url.replace("rediss://", "redis://"), ca_file=server.certs.ca)
    with pytest.raises(ConfigError, match="key_file: cannot read"):
        _build(redis_backend, url=server.plain_url, cert_file=server.certs.client_cert, key_file="/nonexistent")
