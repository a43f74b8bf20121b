"""Helpers for the actor tests: polling with deadlines, the state API, leak checks,
driver subprocesses and the observer-hook event file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
MICRORAY_CLI = str(Path(sys.executable).with_name("microray"))
EVENTS_ENV = "TEST_ACTOR_EVENTS_FILE"  # no MICRORAY_ prefix: those are config keys


# -- polling ---------------------------------------------------------------------------
def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate!r} (last: {last!r})")
        time.sleep(interval)


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


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- leak checks --------------------------------------------------------------------------
def _launcher_pid() -> int | None:
    from microray import process

    return process._launcher.pid if process._launcher is not None else None



def node_process_candidates() -> list[psutil.Process]:
    """Our descendants plus the launcher's: the launcher is double-forked (not our child),
    so the GCS, raylet, zygote and workers of an embedded node hang below it."""
    out = []
    try:
        out.extend(psutil.Process().children(recursive=True))
    except psutil.Error:
        pass
    from microray import process

    launcher = process._launcher
    if launcher is not None:
        try:
            out.extend(psutil.Process(launcher.pid).children(recursive=True))
        except psutil.Error:
            pass
    return out

def stray_processes() -> list[psutil.Process]:
    """Live descendants of this process, minus the launcher (it lives as long as we do)."""
    keep = _launcher_pid()
    out = []
    for child in node_process_candidates():
        if child.pid == keep:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            continue
        out.append(child)
    return out


def assert_no_leaks(timeout: float = 20.0) -> None:
    try:
        wait_for(lambda: not stray_processes(), timeout=timeout, what="node processes to exit")
    except AssertionError:
        left = []
        for p in stray_processes():
            try:
                left.append(f"{p.pid} {' '.join(p.cmdline())[:100]}")
            except psutil.Error:
                pass
        raise AssertionError(f"processes left after shutdown: {left}") from None


# -- driver subprocesses and CLI clusters ------------------------------------------------
def driver_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("MICRORAY_ADDRESS", None)
    env.update(extra or {})
    return env


def driver_code(body: str) -> str:
    return "import os, sys, time\nimport microray as ray\n" + textwrap.dedent(body)


def run_driver(body: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``body`` (after ``import microray as ray``) in a fresh interpreter; fail on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "-c", driver_code(body)], env=driver_env(env), capture_output=True, text=True,
        timeout=timeout, cwd=str(REPO_ROOT),
    )
    assert proc.returncode == 0, f"driver failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def start_driver(body: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a driver subprocess whose stdout the test reads line by line."""
    return subprocess.Popen(
        [sys.executable, "-c", driver_code(body)], env=driver_env(env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=str(REPO_ROOT),
    )


def read_marker(proc: subprocess.Popen, marker: str, timeout: float = 60.0) -> str:
    """Read the driver's stdout until a line starting with ``marker``; return the rest of it."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(marker):
            return line[len(marker):].strip()
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise AssertionError(f"driver never printed {marker!r}; stdout={''.join(seen)!r} stderr={err[-3000:]!r}")


def read_events(path: str | None = None) -> list[dict]:
    """The events the test plugin (``actor_event_plugin``) appended, one JSON object a line."""
    path = path or os.environ[EVENTS_ENV]
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
