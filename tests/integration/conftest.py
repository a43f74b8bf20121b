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


_current: dict[str, ClusterInfo | None] = {"info": None}
# processes that ran before this package's first test (other suites' servers)
_outside_baseline: set[int] = set()


@pytest.fixture(scope="session", autouse=True)
def _outside_processes():
    _outside_baseline.update(descendants())
    yield


def _start(**kwargs: Any) -> ClusterInfo:
    if ray.is_initialized():
        _stop()
    kwargs.setdefault("num_cpus", 2)
    baseline = frozenset(descendants())
    ctx = ray.init(**kwargs)
    w = ray.api._worker
    info = ClusterInfo(ctx, w.store_namespace, w.session_dir, w.node_id, kwargs, baseline)
    _current["info"] = info
    return info


def _stop() -> None:
    info = _current["info"]
    _current["info"] = None
    ns = info.namespace if info is not None else None
    baseline = info.baseline if info is not None else frozenset(_outside_baseline)
    if ns is None and ray.is_initialized():
        ns = ray.api._worker.store_namespace
    ray.shutdown()
    assert_no_leaks(ns, baseline)


@pytest.fixture(scope="module")
def _module_cluster_guard():
    """Stops whatever cluster is left running when a module ends (with a leak check)."""
    yield
    if ray.is_initialized() or _current["info"] is not None:
        _stop()


@pytest.fixture
def cluster(_module_cluster_guard) -> ClusterInfo:
    """A shared 2-CPU embedded cluster (reused by the tests of a module)."""
    info = _current["info"]
    if info is None or info.kwargs != {"num_cpus": 2} or not ray.is_initialized():
        info = _start(num_cpus=2)
    return info


@pytest.fixture
def make_cluster(_module_cluster_guard):
    """``make_cluster(**init_kwargs)``: a cluster of the test's own, stopped after it."""
    started = []

    def make(**kwargs: Any) -> ClusterInfo:
        info = _start(**kwargs)
        started.append(info)
        return info

    yield make
    if started and (ray.is_initialized() or _current["info"] is not None):
        _stop()


@pytest.fixture
def no_cluster(_module_cluster_guard) -> frozenset:
    """Makes sure no cluster is running (for tests of ``init`` errors); leak-checks after.
    Yields our descendants at the start (pass it to ``stray_processes``)."""
    if ray.is_initialized() or _current["info"] is not None:
        _stop()
    baseline = frozenset(descendants())
    yield baseline
    if ray.is_initialized():
        _stop()
    assert_no_leaks(None, baseline)
