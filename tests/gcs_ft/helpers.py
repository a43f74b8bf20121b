"""Helpers for the GCS fault-tolerance tests: polling with deadlines, kill -9, leak checks,
driver subprocesses and the ``microray`` CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import psutil

from microray.testing import processes
from microray.testing.processes import pid_alive

REPO_ROOT = Path(__file__).resolve().parents[2]
MICRORAY_CLI = str(Path(sys.executable).with_name("microray"))


# -- polling ---------------------------------------------------------------------------
def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s. An
    exception from ``predicate`` (e.g. the GCS still restarting) counts as "not yet"."""
    return processes.wait_for(predicate, timeout, interval, what, retry_on=(Exception,))


def kill9(pid: int) -> None:
    """SIGKILL ``pid`` (as a crash would) and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), timeout=10, what=f"pid {pid} to die")


# -- leak checks ---------------------------------------------------------------------------
_BASELINE: set[int] = set()
STORE_SERVERS = ("redis-server", "etcd", "setpriv")  # started by the server fixtures, not leaks


def mark_baseline() -> None:
    """Remember the descendants alive now (other suites' servers, trackers): not ours."""
    _BASELINE.clear()
    _BASELINE.update(processes.descendants())


def stray_processes() -> list[psutil.Process]:
    """Live descendants of this process that appeared since ``mark_baseline``, minus the
    launcher (it lives as long as we do) and the session's store servers."""
    return processes.stray_processes(_BASELINE, STORE_SERVERS)


def assert_no_leaks(timeout: float = 20.0) -> None:
    processes.assert_no_stray_processes(_BASELINE, STORE_SERVERS, timeout, message="processes left behind")


# -- stores -----------------------------------------------------------------------------------
# -- driver subprocesses and CLI heads ------------------------------------------------------------
def driver_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return processes.driver_env(extra, path=[REPO_ROOT])


def run_driver(body: str, env: dict[str, str] | None = None, timeout: float = 90.0) -> subprocess.CompletedProcess:
    """Run ``body`` (after ``import microray as ray``) in a fresh interpreter; fail on a non-zero exit."""
    return processes.run_driver(body, driver_env(env), timeout, cwd=tempfile.gettempdir())


def start_driver(body: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A driver subprocess whose stdout the test reads line by line and whose stdin it writes."""
    return processes.start_driver(body, driver_env(env), cwd=tempfile.gettempdir(), stdin=True)


def read_marker(proc: subprocess.Popen, marker: str, timeout: float = 90.0, stream: Any = None) -> str:
    """Read the driver's stdout (or ``stream``) until a line starting with ``marker``; return
    the rest of it."""
    return processes.read_marker(proc, marker, timeout, stream)


def cli(args: list[str], env: dict[str, str], timeout: float = 90.0) -> subprocess.CompletedProcess:
    return subprocess.run([MICRORAY_CLI, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=tempfile.gettempdir())




# -- raw access to the store servers (what is really in Redis / etcd) -----------------------------
def raw_put(kind: str, url: str, key: bytes, value: bytes) -> None:
    """Write one raw key into the server, bypassing microray."""
    if kind == "redis":
        import redis

        with redis.Redis.from_url(url) as client:
            client.set(key, value)
        return
    _etcd_json(url, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})


def raw_keys(kind: str, url: str, prefix: bytes) -> list[bytes]:
    """Every raw key starting with ``prefix`` in the server."""
    if kind == "redis":
        import redis

        with redis.Redis.from_url(url) as client:
            return sorted(client.scan_iter(match=_redis_glob(prefix) + b"*", count=1000))
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    reply = _etcd_json(url, "/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(end), "keys_only": True})
    import base64

    return sorted(base64.b64decode(kv["key"]) for kv in reply.get("kvs", []))


def store_prefix(kind: str, namespace: str) -> bytes:
    """Where a namespace's keys live (see docs/gcs-stores.md)."""
    return f"{namespace}:".encode() if kind == "redis" else f"/{namespace}/".encode()


def schema_key(kind: str, namespace: str) -> bytes:
    """The reserved key ``check_schema`` keeps the schema version in (docs/gcs-stores.md)."""
    return f"{namespace}:!schema".encode() if kind == "redis" else f"/{namespace}/!schema".encode()


def _redis_glob(prefix: bytes) -> bytes:
    out = b""
    for byte in prefix:
        ch = bytes([byte])
        out += b"\\" + ch if ch in b"*?[]\\" else ch
    return out


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _etcd_json(url: str, path: str, body: dict) -> dict:
    import json
    import urllib.request

    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def processes_with_env(key: str, value: str) -> list[psutil.Process]:
    """Live processes whose environment has ``key=value`` (e.g. the session root a CLI head
    was started with: its GCS, raylet and workers inherit it)."""
    out = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            if proc.environ().get(key) == value:
                out.append(proc)
        except (psutil.Error, OSError):
            continue
    return out
