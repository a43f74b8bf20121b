"""Fixtures for multi-node tests: clusters of real node processes on this machine.

``make_cluster(**kwargs)``  a ``microray.cluster_utils.Cluster`` in the test's own session
                            root; shut down when the test ends, then checked to leave no
                            node process (raylets, GCS, zygotes, workers), no /dev/shm
                            entry of any node's object store and no session folder behind.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import microray as ray
from microray.cluster_utils import Cluster
from microray.testing.processes import describe, wait_for

SHM_DIR = "/dev/shm"
REPO_ROOT = Path(__file__).resolve().parents[2]
# test plugins (tests.cluster.node_event_plugin) are imported by name in the node processes
# (which get this process's sys.path from the Cluster) and in a connected driver: this one
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def node_processes(cluster: Cluster) -> set[int]:
    """Every live process of the cluster's nodes (removed ones included): the recorded
    processes and every process in their process groups or below them."""
    leaders = {pid for node in [*cluster.list_all_nodes(), *cluster.removed_nodes] for pid in node.pids.values()}
    out = set()
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.pid in leaders or os.getpgid(proc.pid) in leaders:
                out.add(proc.pid)
                out.update(c.pid for c in proc.children(recursive=True))
        except (psutil.Error, OSError):
            continue
    return out


def shm_entries(namespaces: set[str]) -> list[str]:
    try:
        return [n for n in os.listdir(SHM_DIR) if any(ns in n for ns in namespaces)]
    except OSError:
        return []


def assert_cluster_left_nothing(cluster: Cluster, pids: set[int], namespaces: set[str]) -> None:
    def gone() -> bool:
        return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                       for p in pids if psutil.pid_exists(p))

    try:
        wait_for(gone, timeout=20, what="node processes to exit", retry_on=(psutil.Error,))
    except AssertionError:
        raise AssertionError(f"node processes left after shutdown: {describe(psutil.Process(p) for p in pids if psutil.pid_exists(p))}") from None
    wait_for(lambda: not shm_entries(namespaces), timeout=10,
             what=f"/dev/shm entries of {sorted(namespaces)} to go")
    assert not os.path.exists(cluster.session_root), f"session root {cluster.session_root} left behind"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def make_cluster(request, tmp_path) -> Iterator:
    """Start a ``Cluster(**kwargs)``; at the end of the test: shut it down and check that it
    left nothing behind. When the test failed, the nodes' session folders (logs) are first
    copied to ``<tmp_path>/cluster-sessions`` for a look."""
    made: list[Cluster] = []

    def make(**kwargs) -> Cluster:
        cluster = Cluster(shutdown_at_exit=False, **kwargs)
        made.append(cluster)
        return cluster

    yield make
    report = getattr(request.node, "report_call", None)
    for i, cluster in enumerate(made):
        if report is not None and report.failed:
            try:
                shutil.copytree(cluster.session_root, tmp_path / f"cluster-sessions-{i}", symlinks=True,
                                ignore_dangling_symlinks=True, dirs_exist_ok=True)
            except (OSError, shutil.Error):
                pass  # what could be copied is there
        pids = node_processes(cluster)
        namespaces = {n.store_namespace for n in [*cluster.list_all_nodes(), *cluster.removed_nodes]}
        if ray.is_initialized() and not cluster.connected:
            ray.shutdown()
        cluster.shutdown()
        assert_cluster_left_nothing(cluster, pids, namespaces)
