"""Fixtures for the GCS fault-tolerance tests: real Redis/etcd servers, real clusters.

``redis_server`` / ``etcd_server``  session-scoped real servers (microray.testing.servers).
``store``          parametrized over the durable stores: ``StoreTarget(name, server, options)``
                   with a fresh namespace per test, so tests never see each other's data.
``make_cluster``   ``make_cluster(**init_kwargs)``: an embedded cluster of the test's own;
                   always shut down (also a GCS restarted by the test) and leak-checked.
``cli_root``       a private ``MICRORAY_SESSION_ROOT`` for ``microray start`` heads, always
                   ``microray stop``-ed (and every recorded pid killed) afterwards.

No mocks: every GCS, raylet, worker and store server here is a real process.
"""

from __future__ import annotations

import os
import signal
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

import microray as ray
from microray.testing.secure_servers import etcd_cluster, etcd_secure_server, redis_secure_server  # noqa: F401 -- pytest fixtures
from microray.testing.servers import etcd_server, redis_server  # noqa: F401 -- pytest fixtures

from .helpers import assert_no_leaks, cli, driver_env, mark_baseline, pid_alive, wait_for


@dataclass
class StoreTarget:
    name: str  # "redis" | "etcd"
    server: Any  # RedisServer | EtcdServer
    options: dict[str, Any] = field(default_factory=dict)

    def fresh(self, namespace: str | None = None) -> dict[str, Any]:
        """Options for another cluster on the same server (its own namespace)."""
        return {**self.options, "namespace": namespace or _new_namespace()}


def _new_namespace() -> str:
    return f"ft-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["redis", "etcd"])
def store(request) -> StoreTarget:
    """A durable store on a real server, with a namespace of the test's own."""
    server = request.getfixturevalue(f"{request.param}_server")
    server.ensure_running()
    return StoreTarget(request.param, server, {"url": server.url, "namespace": _new_namespace()})


# -- embedded clusters ---------------------------------------------------------------------------
def _stop_cluster() -> None:
    head = ray.api._head
    extra = []
    if head is not None:
        extra = [pid for pid in head.pids.values() if pid]
    try:
        ray.shutdown()
    finally:
        # a GCS restarted by a test is a detached process: make sure it is gone too
        for pid in extra:
            if pid_alive(pid):
                try:
                    wait_for(lambda: not pid_alive(pid), timeout=10, what=f"pid {pid} to exit")
                except AssertionError:
                    os.kill(pid, signal.SIGKILL)
                    raise


@pytest.fixture
def make_cluster():
    """``make_cluster(**init_kwargs)`` -> the driver's core worker; shut down afterwards."""
    if ray.is_initialized():
        _stop_cluster()
    mark_baseline()
    started = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("num_cpus", 2)
        kwargs.setdefault("include_dashboard", False)
        ray.init(**kwargs)
        started.append(kwargs)
        return ray.api._worker

    try:
        yield make
    finally:
        if ray.is_initialized() or ray.api._head is not None:
            _stop_cluster()
        assert_no_leaks()


@dataclass
class CliRoot:
    root: str
    env: dict[str, str]
    seen_pids: set[int] = field(default_factory=set)

    def handle(self):
        from microray import node

        handle = node.current_cluster(self.root)
        if handle is not None:
            self.seen_pids.update(p for p in handle.pids.values() if p)
        return handle


@pytest.fixture
def cli_root(tmp_path):
    """A private session root for ``microray start`` (so ``address="auto"`` and ``microray stop``
    see only this test's head); whatever was started there is stopped afterwards."""
    root = str(tmp_path / "sessions")
    info = CliRoot(root, driver_env({"MICRORAY_SESSION_ROOT": root}))
    try:
        yield info
    finally:
        info.handle()
        cli(["stop"], info.env)
        if info.handle() is not None:
            cli(["stop", "--force"], info.env)
        try:
            wait_for(lambda: not [p for p in info.seen_pids if pid_alive(p)], timeout=20,
                     what=f"cluster processes {sorted(info.seen_pids)} to exit")
        finally:
            for pid in info.seen_pids:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
