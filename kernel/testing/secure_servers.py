"""A several-member etcd cluster and TLS / password variants of the test servers.

``EtcdCluster(size=3)``: real ``etcd`` members on free loopback ports (client and peer), each
with its own data directory under one temporary root, started together (a member is ready only
once a quorum has elected a leader). ``members`` are ``EtcdServer`` objects, so a test can
``kill()`` (SIGKILL) one and ``start()`` it again; the cluster itself has the ``ServerProcess``
lifecycle (``start``/``stop``/``restart``/``pause``/``resume``/``ensure_running``/``close``) so
the GCS store contract can use it as its ``gcs_server``; ``url`` is the members' URLs joined
by commas (what the ``etcd`` store accepts and names in its errors).

``enable_etcd_auth(server, user, password)`` turns on etcd's auth through its JSON gateway: a
``root`` user, and ``user`` with read/write on every key.

Session fixtures (load with ``-p microray.testing.secure_servers`` or import them into a
conftest):

``etcd_cluster``        a 3-member cluster, plain HTTP.
``etcd_secure_server``  one member serving TLS only, requiring a client certificate and
                        user/password auth; ``.auth`` = ``(user, password)``, ``.certs``.
``redis_secure_server`` ``redis-server`` serving TLS only (``rediss://``) and requiring a
                        password (given to it in a 0600 config file, not in its argv).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from microray.testing.certs import CertError, TestCerts, make_test_certs
from microray.testing.servers import (
    EtcdServer,
    RedisServer,
    ServerError,
    _missing,
    _sweep_stale_dirs,
    free_port,
    running,
)

log = structlog.get_logger(__name__)

__all__ = [
    "EtcdCluster",
    "enable_etcd_auth",
    "temporary_certs",
    "TEST_ETCD_USER",
    "etcd_cluster",
    "etcd_secure_server",
    "redis_secure_server",
]

TEST_ETCD_USER = "microray-gcs"


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class EtcdCluster:
    """``size`` etcd members on this machine forming one cluster. See the module docstring."""

    kind = "etcd-cluster"

    def __init__(self, size: int = 3, *, certs: TestCerts | None = None, start_timeout: float = 60.0) -> None:
        _sweep_stale_dirs()
        self.root = Path(tempfile.mkdtemp(prefix=f"microray-etcd-{os.getpid()}-"))
        ports = _free_ports(2 * size)
        token = f"microray-{uuid.uuid4().hex[:12]}"
        peers = ",".join(f"m{i}=http://127.0.0.1:{ports[size + i]}" for i in range(size))
        self.members = [
            EtcdServer(
                port=ports[i], peer_port=ports[size + i], data_dir=self.root / f"m{i}",
                start_timeout=start_timeout, name=f"m{i}", initial_cluster=peers,
                cluster_token=token, certs=certs,
            )  # fmt: skip
            for i in range(size)
        ]
        self._closed = False

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def url(self) -> str:
        """The members' URLs joined by commas."""
        return ",".join(self.urls)

    @property
    def running(self) -> bool:
        return all(m.running for m in self.members)

    def member(self, url: str) -> EtcdServer:
        """The member serving ``url``."""
        for m in self.members:
            if m.url == url:
                return m
        raise ServerError(f"no member of {self!r} serves {url}")

    def leader(self) -> EtcdServer:
        """The member that is the raft leader now (asked of the running members)."""
        for m in self.members:
            if not m.running:
                continue
            try:
                status = _gateway(m, "/v3/maintenance/status", {})
            except OSError:
                continue
            if str(status.get("leader")) == str(status["header"]["member_id"]):
                return m
        raise ServerError(f"no member of {self!r} says it is the leader")

    def start(self) -> "EtcdCluster":
        """Start every member that is not running and wait until each answers."""
        if self._closed:
            raise ServerError(f"etcd cluster {self.url} was closed")
        for m in self.members:
            m.launch()
        for m in self.members:
            m.wait_ready()
        return self

    ensure_running = start

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def restart(self) -> "EtcdCluster":
        self.stop()
        return self.start()

    def pause(self) -> None:
        for m in self.members:
            m.pause()

    def resume(self) -> None:
        for m in self.members:
            m.resume()

    def close(self) -> None:
        """Stop every member and delete their data."""
        if self._closed:
            return
        try:
            for m in self.members:
                m.close()
        finally:
            self._closed = True
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "EtcdCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EtcdCluster {self.url} {'running' if self.running else 'not all running'}>"


def _gateway(server: EtcdServer, path: str, body: dict[str, Any], token: str = "") -> dict[str, Any]:
    request = urllib.request.Request(
        f"{server.url}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **({"Authorization": token} if token else {})},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10, context=server.ssl_context()) as resp:
        return json.loads(resp.read() or b"{}")


def enable_etcd_auth(server: EtcdServer, user: str, password: str) -> None:
    """Enable auth on ``server``'s cluster: a ``root`` user (password ``password``) and
    ``user`` (same password) with read/write on every key."""
    everything = {"key": base64.b64encode(b"\0").decode(), "range_end": base64.b64encode(b"\0").decode()}
    _gateway(server, "/v3/auth/user/add", {"name": "root", "password": password})
    _gateway(server, "/v3/auth/role/add", {"name": "root"})
    _gateway(server, "/v3/auth/user/grant", {"user": "root", "role": "root"})
    _gateway(server, "/v3/auth/user/add", {"name": user, "password": password})
    _gateway(server, "/v3/auth/role/add", {"name": "gcs"})
    _gateway(server, "/v3/auth/role/grant", {"name": "gcs", "perm": {"permType": "READWRITE", **everything}})
    _gateway(server, "/v3/auth/user/grant", {"user": user, "role": "gcs"})
    _gateway(server, "/v3/auth/enable", {})


@contextlib.contextmanager
def temporary_certs() -> Iterator[TestCerts]:
    """Test certificates (``make_test_certs``) in a temporary directory deleted afterwards."""
    directory = tempfile.mkdtemp(prefix=f"microray-certs-{os.getpid()}-")
    try:
        yield make_test_certs(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------
# pytest fixtures (this module is a pytest plugin: ``-p microray.testing.secure_servers``)
# ---------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover -- library use without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def etcd_cluster() -> Iterator[Any]:
        """A real 3-member etcd cluster (``secure_servers.EtcdCluster``) for the session, stopped
        and deleted afterwards. Tests that kill members start them again (``ensure_running``)."""
        try:
            cluster = EtcdCluster(3)
        except ServerError as exc:
            _missing("etcd_cluster", exc)
            raise
        with cluster:
            yield cluster

    @contextlib.contextmanager
    def _secure(kind: str) -> Iterator[Any]:
        try:
            with temporary_certs() as certs:
                yield certs
        except CertError as exc:
            pytest.skip(f"{kind}: cannot make a test certificate: {exc}")

    @pytest.fixture(scope="session")
    def etcd_secure_server() -> Iterator[EtcdServer]:
        """One etcd member serving TLS only, requiring a client certificate and user/password
        auth (``.auth`` = ``(user, password)``, ``.certs`` the test CA and certificates)."""
        with _secure("etcd_secure_server") as certs:
            try:
                server = EtcdServer(certs=certs, client_cert_auth=True)
            except ServerError as exc:
                _missing("etcd_secure_server", exc)
                raise
            with running(server):
                password = os.urandom(12).hex()
                enable_etcd_auth(server, TEST_ETCD_USER, password)
                server.auth = (TEST_ETCD_USER, password)  # type: ignore[attr-defined]
                yield server

    @pytest.fixture(scope="session")
    def redis_secure_server() -> Iterator[RedisServer]:
        """``redis-server`` serving TLS only (``rediss://``) and requiring a password (``url``
        carries it, ``plain_url`` does not; ``.certs`` the test CA and certificates)."""
        with _secure("redis_secure_server") as certs:
            try:
                server = RedisServer(password=os.urandom(12).hex(), certs=certs)
            except ServerError as exc:
                _missing("redis_secure_server", exc)
                raise
            with running(server):
                yield server
