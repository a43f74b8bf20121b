"""Fixtures for the actor tests: real clusters (embedded and CLI-started). No mocks:
every actor is a real worker process.

``cluster``       a shared ``init(num_cpus=2)`` cluster for the tests of a module
                  (stopped, with a leak check, when the module ends or when a test
                  asks for a differently configured one).
``make_cluster``  ``make_cluster(**init_kwargs)``: a cluster of the test's own.
``cli_cluster``   a head node started with ``microray start --head`` in a private
                  session root, always ``microray stop``-ed afterwards.
"""

from __future__ import annotations

import faulthandler
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

import pytest

import microray as ray
from microray.testing import event_files
from microray.testing.clusters import EmbeddedClusters, StartedCluster

from .helpers import (
    EVENTS_ENV,
    MICRORAY_CLI,
    REPO_ROOT,
    assert_no_leaks,
    driver_env,
    mark_baseline,
    pid_alive,
    run_driver,
    start_driver,
    wait_for,
)

# The observer-hook test registers ``tests.actors.actor_event_plugin`` in the GCS.
# Node processes are forks of a launcher that is forked from this process at the
# first ``init`` of the pytest session, so what they inherit (sys.path and the
# environment) is fixed now, at collection time, before any test starts a cluster.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
# A node process that crashes in C (segfault, abort) writes its stack to its .err
# log: the forks inherit a faulthandler on fd 2, which they point at that log.
faulthandler.enable(file=sys.__stderr__, all_threads=True)
event_files.name_session_file(EVENTS_ENV, "microray-actor-events-")


# -- embedded clusters ---------------------------------------------------------------------
def _describe(started: StartedCluster) -> Any:
    mark_baseline(started.baseline)  # what ran before the cluster is not a leak
    return ray.api._worker


clusters = EmbeddedClusters(shared={}, defaults={"num_cpus": 2, "include_dashboard": False},
                            describe=_describe, check_leaks=lambda _started: assert_no_leaks())


@pytest.fixture(scope="module")
def _module_guard():
    yield from clusters.module_guard()


def _head_gcs_pid() -> int | None:
    head = ray.api._head
    return head.pids.get("gcs") if head is not None else None


@pytest.fixture(autouse=True)
def _gcs_watch():
    """Name the cause when an embedded cluster's GCS process vanishes during a test
    (the errors the test then sees are only "GCS unavailable")."""
    yield
    pid = _head_gcs_pid() if ray.is_initialized() else None
    if pid and not pid_alive(pid):
        session = ray.api._worker.session_dir
        clusters.stop_quietly()
        pytest.fail(f"the cluster's GCS process (pid {pid}) died during the test; see {session}/logs")


@pytest.fixture
def cluster(_module_guard):
    """A shared 2-CPU embedded cluster, reused by the tests of a module."""
    pid = _head_gcs_pid() if ray.is_initialized() else None
    if pid and not pid_alive(pid):  # never reuse a cluster whose GCS is gone
        clusters.stop_quietly()
    return clusters.shared_cluster()


@pytest.fixture
def make_cluster(_module_guard):
    """``make_cluster(**init_kwargs)``: a cluster with the test's own arguments, stopped after it."""
    yield from clusters.per_test()


# -- a head node started by the CLI ---------------------------------------------------------
@dataclass
class CliCluster:
    session_root: str
    env: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    gcs_address: str = ""

    def run_driver(self, body: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return run_driver(body, env=self.env, timeout=timeout)

    def start_driver(self, body: str) -> subprocess.Popen:
        return start_driver(body, env=self.env)


def _cli(args: list[str], env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([MICRORAY_CLI, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=tempfile.gettempdir())


@pytest.fixture
def cli_cluster(tmp_path):
    """``microray start --head`` in a private session root (so clusters others run on
    this machine are neither found by ``address="auto"`` nor stopped); always stopped."""
    from microray import node, session
    from microray.util.state import StateClient

    root = str(tmp_path / "sessions")
    env = driver_env({"MICRORAY_SESSION_ROOT": root})
    info = CliCluster(root, env)
    try:
        started = _cli(["start", "--head", "--num-cpus", "2", "--dashboard", "none"], env)
        assert started.returncode == 0, f"microray start failed:\n{started.stdout}\n{started.stderr}"
        handle = node.current_cluster(root)
        assert handle is not None, "microray start left no cluster record"
        info.pids = dict(handle.pids)
        info.gcs_address = handle.gcs_address
        token = session.read_token(handle.session_dir)
        yield info
    finally:
        actor_pids = []
        if info.gcs_address:
            try:
                with StateClient(info.gcs_address, token=token) as c:
                    actor_pids = [a["pid"] for a in c.actors() if a.get("pid")]
            except Exception:  # noqa: BLE001 -- the cluster may already be gone
                pass
        stopped = _cli(["stop"], env)
        if node.current_cluster(root) is not None:
            _cli(["stop", "--force"], env)
        pids = list(info.pids.values()) + actor_pids
        wait_for(lambda: not [p for p in pids if pid_alive(p)], timeout=20,
                 what=f"cluster processes {pids} to exit after 'microray stop'")
        assert stopped.returncode == 0, f"microray stop failed:\n{stopped.stdout}\n{stopped.stderr}"
