"""Fixtures for the integration tests: real embedded clusters, and leak checks.

``cluster``       a shared ``init(num_cpus=2)`` cluster, started on first use in a
                  module and stopped (with a leak check) at the end of the module
                  or when a test needs a differently configured cluster.
``make_cluster``  start a cluster with the test's own ``init`` arguments; it is
                  stopped and leak-checked when the test ends.

A leak check asserts, with a deadline, that after ``shutdown()`` no process started
by microray is left below the test process (apart from the one launcher, which
intentionally lives as long as the driver) and that no /dev/shm entry of the
session's object-store namespace is left.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import microray as ray
from microray.testing.clusters import EmbeddedClusters, StartedCluster
from microray.testing.processes import assert_no_stray_processes, descendants, wait_for

SHM_DIR = "/dev/shm"


# -- what a cluster leaves behind ------------------------------------------------------
def shm_entries(namespace: str) -> list[str]:
    """/dev/shm entries that belong to an object-store namespace."""
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    return [n for n in names if namespace in n]


def assert_no_leaks(namespace: str | None, baseline: set[int] | frozenset[int] = frozenset(),
                    timeout: float = 15.0) -> None:
    """After shutdown: no process below us that was not there before the cluster
    started (the launcher excepted), and no shm entry of the namespace."""
    assert_no_stray_processes(baseline, timeout=timeout)
    if namespace:
        try:
            wait_for(lambda: not shm_entries(namespace), timeout=timeout, what="shm entries to go")
        except AssertionError:
            raise AssertionError(
                f"/dev/shm entries of namespace {namespace!r} left after shutdown: {shm_entries(namespace)}"
            ) from None


# -- clusters ---------------------------------------------------------------------------
@dataclass
class ClusterInfo:
    """A running test cluster: its context, ids, session folder and init arguments."""

    context: Any
    namespace: str
    session_dir: str
    node_id: str
    kwargs: dict
    baseline: frozenset = frozenset()  # our descendants before the cluster started

    @property
    def logs(self) -> Path:
        return Path(self.session_dir) / "logs"

    def raylet_log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("raylet-*.log")))


# processes that ran before this package's first test (other suites' servers)
_outside_baseline: set[int] = set()


@pytest.fixture(scope="session", autouse=True)
def _outside_processes():
    _outside_baseline.update(descendants())
    yield


def _describe(started: StartedCluster) -> ClusterInfo:
    w = ray.api._worker
    return ClusterInfo(started.context, w.store_namespace, w.session_dir, w.node_id, started.kwargs,
                       started.baseline)


def _check_leaks(started: StartedCluster | None) -> None:
    if started is None:
        assert_no_leaks(None, frozenset(_outside_baseline))
    else:
        assert_no_leaks(started.info.namespace, started.baseline)


clusters = EmbeddedClusters(shared={"num_cpus": 2}, defaults={"num_cpus": 2}, describe=_describe,
                            check_leaks=_check_leaks)


@pytest.fixture(scope="module")
def _module_cluster_guard():
    """Stops whatever cluster is left running when a module ends (with a leak check)."""
    yield from clusters.module_guard()


@pytest.fixture
def cluster(_module_cluster_guard) -> ClusterInfo:
    """A shared 2-CPU embedded cluster (reused by the tests of a module)."""
    return clusters.shared_cluster()


@pytest.fixture
def make_cluster(_module_cluster_guard):
    """``make_cluster(**init_kwargs)``: a cluster of the test's own, stopped after it."""
    yield from clusters.per_test()


@pytest.fixture
def no_cluster(_module_cluster_guard) -> frozenset:
    """Makes sure no cluster is running (for tests of ``init`` errors); leak-checks after.
    Yields our descendants at the start (pass it to ``stray_processes``)."""
    if clusters.running():
        clusters.stop()
    baseline = frozenset(descendants())
    yield baseline
    if ray.is_initialized():
        clusters.stop()
    assert_no_leaks(None, baseline)
