"""Fixtures for the object tests (issue 4, runtime side): real clusters, real worker
processes, the node's real object store. No mocks.

``cluster``       a shared ``init(num_cpus=2, object_store_memory=600 MB)`` cluster for
                  the tests of a module (stopped, with a leak check, when the module
                  ends or a test asks for a differently configured one).
``make_cluster``  ``make_cluster(**init_kwargs)``: a cluster of the test's own, stopped
                  and leak-checked when the test ends.

A leak check asserts, with deadlines, that after ``shutdown()`` no process started by
microray is left below the test process (the launcher excepted: it lives as long as
the driver), that ``/dev/shm/microray-<namespace>`` is gone and that no file is left in
the session's spill folder (``<session>/spill/<namespace>``).

Memory is checked through the node's store: ``store_used()`` is
``ray.api._worker.object_store.usage().used_bytes`` (every process of the node sees
the same store), and ``wait_used(baseline)`` polls it, collecting garbage, until it is
back to the baseline or a deadline passes.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

import microray as ray
from microray.testing import event_files, processes
from microray.testing.clusters import EmbeddedClusters, StartedCluster
from microray.testing.processes import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENTS_ENV = "TEST_OBJECT_EVENTS_FILE"  # no MICRORAY_ prefix: those are config keys
PLUGIN = "tests.objects.object_event_plugin"
MB = 1_000_000
SHARED_KWARGS = {"num_cpus": 2, "object_store_memory": 600 * MB}

# The hook test names ``tests.objects.object_event_plugin`` in ``init(plugins=...)``; the
# raylet and workers import it too. Node processes are forks of a launcher forked from
# this process at the first ``init`` of the pytest session, so what they inherit
# (sys.path, the environment) must be in place now, at collection, before any test of
# any folder starts a cluster.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
event_files.name_session_file(EVENTS_ENV, "microray-object-events-")


# -- the node's object store ---------------------------------------------------------------
def store_usage():
    return ray.api._worker.object_store.usage()


def store_used() -> int:
    return store_usage().used_bytes


def wait_used(expected: int, timeout: float = 20.0, what: str = "") -> None:
    """Wait until the store's used bytes are exactly ``expected`` (collecting garbage, so
    refs in reference cycles go too); fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        used = store_used()
        if used == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"object store used_bytes {used} != {expected} after {timeout}s"
                f"{' (' + what + ')' if what else ''}; usage: {store_usage()}; "
                f"objects by owner: {_objects_for_diagnosis()}"
            )
        time.sleep(0.05)


def _objects_for_diagnosis() -> list:
    try:
        from microray.util.state import list_objects

        return [(o["object_id"], o["owner_pid"], o["location"], o["reference_type"]) for o in list_objects()]
    except Exception as exc:  # noqa: BLE001 -- only for a failure message
        return [repr(exc)]


def spill_dir() -> str:
    """The node's spill folder: ``<session_dir>/spill/<namespace>``."""
    w = ray.api._worker
    return os.path.join(w.session_dir, "spill", w.store_namespace)


def files_under(path: str) -> dict[str, int]:
    """Every file below ``path`` (relative name -> size); {} when it does not exist."""
    out = {}
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                out[os.path.relpath(full, path)] = os.path.getsize(full)
            except OSError:
                pass
    return out


class Gate:
    """A file a task polls for: the test opens it once the driver dropped its refs, so
    the task's read happens after that, without sleeping and hoping."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def open(self) -> None:
        Path(self.path).touch()

    def wait(self, timeout: float = 60.0) -> None:  # called inside tasks
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {self.path} never opened")
            time.sleep(0.02)


@pytest.fixture
def gate(tmp_path) -> Gate:
    return Gate(tmp_path / "gate")


# -- the observer plugin's event file --------------------------------------------------------
def read_events() -> list[dict]:
    return event_files.read_events(os.environ[EVENTS_ENV])


# -- leak checks ------------------------------------------------------------------------------
_BASELINE: set[int] = set()  # descendants alive before the cluster started: not ours


def _mark_baseline() -> None:
    """Descendants alive now, before a test starts processes outside ``clusters``: not ours."""
    _BASELINE.clear()
    _BASELINE.update(processes.descendants())


def stray_processes() -> list[psutil.Process]:
    return processes.stray_processes(_BASELINE)


def shm_folder(namespace: str) -> str:
    return f"/dev/shm/microray-{namespace}"


def assert_no_leaks(namespace: str | None, spill: str | None, timeout: float = 20.0) -> None:
    processes.assert_no_stray_processes(_BASELINE, timeout=timeout)
    if namespace:
        wait_for(lambda: not os.path.exists(shm_folder(namespace)), timeout=timeout,
                 what=f"{shm_folder(namespace)} to be removed")
    if spill:
        wait_for(lambda: not files_under(spill), timeout=timeout, what=f"files in {spill} to be removed")


# -- clusters -----------------------------------------------------------------------------------
@dataclass
class ClusterInfo:
    namespace: str
    session_dir: str
    spill_dir: str
    kwargs: dict


def _describe(started: StartedCluster) -> ClusterInfo:
    w = ray.api._worker
    return ClusterInfo(w.store_namespace, w.session_dir, spill_dir(), started.kwargs)


def _check_leaks(started: StartedCluster | None) -> None:
    if started is not None:
        _BASELINE.clear()
        _BASELINE.update(started.baseline)
        assert_no_leaks(started.info.namespace, started.info.spill_dir)
    else:
        assert_no_leaks(None, None)


clusters = EmbeddedClusters(shared=SHARED_KWARGS, defaults={"num_cpus": 2}, describe=_describe,
                            check_leaks=_check_leaks)


@pytest.fixture(scope="module")
def _module_guard():
    yield from clusters.module_guard()


@pytest.fixture
def cluster(_module_guard) -> ClusterInfo:
    """The shared cluster of a module (``SHARED_KWARGS``)."""
    return clusters.shared_cluster()


@pytest.fixture
def make_cluster(_module_guard):
    """``make_cluster(**init_kwargs)``: a cluster of the test's own, stopped after it."""
    yield from clusters.per_test()
