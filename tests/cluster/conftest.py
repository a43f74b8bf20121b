"""Fixtures for multi-node tests: clusters of real node processes on this machine.

``make_cluster(**kwargs)``  a ``microray.cluster_utils.Cluster`` in the test's own session
                            root; shut down when the test ends, then checked to leave no
                            node process (raylets, GCS, zygotes, workers), no /dev/shm
                            entry of any node's object store and no session folder behind.
                            ``make_cluster(isolation="netns")``: worker nodes in namespaces
                            of their own (skipped, with the reason, where they cannot be
                            made); afterwards no namespace, veth or bridge of it is left
                            (``isolation.ISOLATIONS`` parametrizes a test over both).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import microray as ray
from microray.cluster_netns import STATE_DIR
from microray.cluster_utils import Cluster, IsolationUnavailable
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


def network_names() -> set[str]:
    """The network namespaces and links on this machine now."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return ({line.split()[0] for line in netns.splitlines() if line.strip()}
            | {line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line})


def assert_network_left_nothing(tag: str, names: set[str]) -> None:
    left = sorted(n for n in network_names() if n in names)
    assert not left, f"isolated cluster left namespaces/links behind: {left}"
    assert not (STATE_DIR / f"{tag}.json").exists(), f"isolated cluster left its record {STATE_DIR}/{tag}.json"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def make_cluster(request, tmp_path, monkeypatch) -> Iterator:
    """Start a ``Cluster(**kwargs)``; at the end of the test: shut it down and check that it
    left nothing behind. When the test failed, the nodes' session folders (logs) are first
    copied to ``<tmp_path>/cluster-sessions`` for a look."""
    made: list[Cluster] = []

    def make(**kwargs) -> Cluster:
        try:
            cluster = Cluster(shutdown_at_exit=False, **kwargs)
        except IsolationUnavailable as exc:
            pytest.skip(str(exc))
        made.append(cluster)
        # this process runs on the cluster's "machine": its state API calls find the
        # cluster token in the cluster's session root
        monkeypatch.setenv("MICRORAY_SESSION_ROOT", cluster.session_root)
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
        network = cluster.network
        if network is not None:
            made_names = {network.bridge} | {n for ns in network.namespaces for n in (ns.name, ns.host_veth)}
            made_names |= {n for node in cluster.removed_nodes if node.netns
                           for n in (node.netns.name, node.netns.host_veth)}
        if ray.is_initialized() and not cluster.connected:
            ray.shutdown()
        cluster.shutdown()
        assert_cluster_left_nothing(cluster, pids, namespaces)
        if network is not None:
            assert_network_left_nothing(network.tag, made_names)
