"""Fixtures for the security tests: real clusters, started and stopped with a leak check,
and raw gRPC stubs to reach each service with no token, a wrong one, or the right one."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import grpc
import pytest

import microray as ray
from microray import rpc
from microray.testing.clusters import EmbeddedClusters, StartedCluster
from microray.testing.processes import assert_no_stray_processes


def _check_leaks(started: StartedCluster | None) -> None:
    assert_no_stray_processes(started.baseline if started else frozenset())


clusters = EmbeddedClusters(shared={"num_cpus": 2}, defaults={"dashboard": "none"}, check_leaks=_check_leaks)


@pytest.fixture(scope="module")
def _module_guard():
    yield from clusters.module_guard()


@pytest.fixture
def cluster(_module_guard):
    """The module's shared cluster; the test process is its driver."""
    return clusters.shared_cluster()


@pytest.fixture
def make_cluster(_module_guard):
    yield from clusters.per_test()


class Marker:
    """Pickled, it opens (creates) ``path`` when unpickled: what an attacker would send
    in a pickled request field. The file existing afterwards means code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def marker_pickle(path: Path) -> bytes:
    return pickle.dumps(Marker(path))


def channel(address: str, token: str | None) -> Any:
    """A blocking channel to ``address``: with ``token`` as the cluster token, or none."""
    if token is None:
        return grpc.insecure_channel(address, options=rpc.OPTIONS)
    return rpc.blocking_channel(address, rpc.Credentials(token))


def cluster_token() -> str:
    return ray.api._worker.credentials.token


def refused(call: Any, *, token_shown: str | None) -> grpc.RpcError:
    """Run ``call()``; it must fail UNAUTHENTICATED, saying a cluster token is required or
    wrong, without echoing any token (this driver's cluster's, or ``token_shown``)."""
    return refused_by(call, cluster_token(), token_shown)


def refused_by(call: Any, real_token: str, token_shown: str | None) -> grpc.RpcError:
    """``refused`` for a cluster whose token is ``real_token``."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    exc = info.value
    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, (exc.code(), exc.details())
    details = exc.details() or ""
    assert "cluster token" in details, details
    assert real_token not in details
    if token_shown:
        assert token_shown not in details
    return exc


NO_TOKEN, WRONG_TOKEN = None, "wrong-" + os.urandom(8).hex()
