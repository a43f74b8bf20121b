"""Helpers for the actor tests: polling with deadlines, the state API, leak checks,
driver subprocesses and the observer-hook event file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from microray.testing import event_files, processes
from microray.testing.processes import pid_alive  # noqa: F401 -- used by the tests

REPO_ROOT = Path(__file__).resolve().parents[2]
MICRORAY_CLI = str(Path(sys.executable).with_name("microray"))
EVENTS_ENV = "TEST_ACTOR_EVENTS_FILE"  # no MICRORAY_ prefix: those are config keys


# -- polling ---------------------------------------------------------------------------
def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    return processes.wait_for(predicate, timeout, interval, what)


def actor_state(handle_or_id: Any) -> dict:
    """The state-API row of an actor (``microray.util.state.get_actor``)."""
    from microray.util.state import get_actor

    actor_id = handle_or_id if isinstance(handle_or_id, str) else handle_or_id._actor_id
    row = get_actor(actor_id)
    assert row is not None, f"actor {actor_id} unknown to the state API"
    return row


def wait_state(handle_or_id: Any, state: str, timeout: float = 15.0) -> dict:
    return wait_for(
        lambda: (lambda r: r if r["state"] == state else None)(actor_state(handle_or_id)),
        timeout=timeout, what=f"actor state {state}",
    )


# -- leak checks --------------------------------------------------------------------------
_BASELINE: set[int] = set()


def mark_baseline(pids: Iterable[int] | None = None) -> None:
    """Remember the processes below us now, or ``pids`` (e.g. the Redis/etcd servers of
    another folder's session fixtures): a cluster started after this cannot have left them."""
    _BASELINE.clear()
    _BASELINE.update(processes.descendants() if pids is None else pids)


def assert_no_leaks(timeout: float = 20.0) -> None:
    """No process microray started is left below us (the launcher excepted)."""
    processes.assert_no_stray_processes(_BASELINE, timeout=timeout)


# -- driver subprocesses and CLI clusters ------------------------------------------------
def driver_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return processes.driver_env(extra, path=[REPO_ROOT])


def run_driver(body: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``body`` (after ``import microray as ray``) in a fresh interpreter; fail on a non-zero exit."""
    return processes.run_driver(body, driver_env(env), timeout, cwd=REPO_ROOT)


def start_driver(body: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a driver subprocess whose stdout the test reads line by line."""
    return processes.start_driver(body, driver_env(env), cwd=REPO_ROOT)


def read_marker(proc: subprocess.Popen, marker: str, timeout: float = 60.0) -> str:
    """Read the driver's stdout until a line starting with ``marker``; return the rest of it."""
    return processes.read_marker(proc, marker, timeout)


def read_events(path: str | None = None) -> list[dict]:
    """The events the test plugin (``actor_event_plugin``) appended, one JSON object a line."""
    return event_files.read_events(path or os.environ[EVENTS_ENV])
