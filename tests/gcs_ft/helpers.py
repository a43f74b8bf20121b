"""Helpers for the GCS fault-tolerance tests: polling with deadlines, kill -9, leak checks,
driver subprocesses and the ``microray`` CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
MICRORAY_CLI = str(Path(sys.executable).with_name("microray"))


# -- polling ---------------------------------------------------------------------------
def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 -- e.g. the GCS still restarting; keep polling
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate!r} (last: {last!r})")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill9(pid: int) -> None:
    """SIGKILL ``pid`` (as a crash would) and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), timeout=10, what=f"pid {pid} to die")


# -- leak checks ---------------------------------------------------------------------------
def _launcher_pid() -> int | None:
    from microray import process

    return process._launcher.pid if process._launcher is not None else None


_BASELINE: set[int] = set()


def mark_baseline() -> None:
    """Remember the descendants alive now (other suites' servers, trackers): not ours."""
    _BASELINE.clear()
    try:
        _BASELINE.update(c.pid for c in psutil.Process().children(recursive=True))
    except psutil.Error:
        pass



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
    """Live descendants of this process that appeared since ``mark_baseline``, minus the
    launcher (it lives as long as we do)."""
    keep = _launcher_pid()
    out = []
    for child in node_process_candidates():
        if child.pid == keep or child.pid in _BASELINE:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            argv0 = os.path.basename((child.cmdline() or [""])[0]).split(" ")[0]
        except psutil.NoSuchProcess:
            continue
        if argv0 in ("redis-server", "etcd", "setpriv"):
            continue  # the session's store servers (started by the server fixtures)
        out.append(child)
    return out


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            out.append(f"{p.pid} (gone)")
    return out


def assert_no_leaks(timeout: float = 20.0) -> None:
    try:
        wait_for(lambda: not stray_processes(), timeout=timeout, what="node processes to exit")
    except AssertionError:
        raise AssertionError(f"processes left behind: {describe(stray_processes())}") from None


# -- stores -----------------------------------------------------------------------------------
# -- driver subprocesses and CLI heads ------------------------------------------------------------
def driver_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("MICRORAY_ADDRESS", None)
    env.update(extra or {})
    return env


def driver_code(body: str) -> str:
    return "import os, sys, time\nimport microray as ray\n" + textwrap.dedent(body)


def run_driver(body: str, env: dict[str, str] | None = None, timeout: float = 90.0) -> subprocess.CompletedProcess:
    """Run ``body`` (after ``import microray as ray``) in a fresh interpreter; fail on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "-c", driver_code(body)], env=driver_env(env), capture_output=True, text=True,
        timeout=timeout, cwd=tempfile.gettempdir(),
    )
    assert proc.returncode == 0, f"driver failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def start_driver(body: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A driver subprocess whose stdout the test reads line by line and whose stdin it writes."""
    return subprocess.Popen(
        [sys.executable, "-c", driver_code(body)], env=driver_env(env), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir(),
    )


def read_marker(proc: subprocess.Popen, marker: str, timeout: float = 90.0, stream: Any = None) -> str:
    """Read the driver's stdout (or ``stream``) until a line starting with ``marker``; return
    the rest of it."""
    import selectors

    stream = stream or proc.stdout
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(marker):
            return line[len(marker):].strip()
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise AssertionError(f"driver never printed {marker!r}; stdout={''.join(seen)!r} stderr={err[-4000:]!r}")


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
