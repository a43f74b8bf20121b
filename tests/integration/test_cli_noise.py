"""The CLI says what matters and nothing else: a failed start prints its error without
debug lines, the microbenchmark prints only its figures; and ``start`` takes Ray's
dashboard and temp-dir flags."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from .test_cli import env, run_cli  # noqa: F401 -- env is a fixture

pytestmark = pytest.mark.timeout(300)


def test_failed_start_prints_its_error_without_debug_lines(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    result = run_cli("start", "--head", "--gcs-store", "redis", "--gcs-store-option", "url=redis://127.0.0.1:1",
                     env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result
    assert "Error: the GCS failed to start" in result.stderr
    assert "[debug" not in result.stdout + result.stderr and "[info" not in result.stdout + result.stderr, result.stderr


def test_microbenchmark_prints_only_its_figures(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    result = run_cli("microbenchmark", "--quick", "--only", "put calls", env=env, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "single client put calls" in result.stdout
    assert "Dashboard" not in out and "dashboard" not in out and "warning" not in out.lower(), out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_start_takes_dashboard_port_host_and_temp_dir(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    port = _free_port()
    root = tmp_path / "my-temp-dir"
    started = run_cli("start", "--head", "--num-cpus", "1", "--dashboard-host", "127.0.0.1", "--dashboard-port",
                      str(port), "--temp-dir", str(root), env=env, cwd=tmp_path, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        assert f"Dashboard: http://127.0.0.1:{port}" in started.stdout
        assert f"Session:     {root}/session_" in started.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as resp:  # the login page
            assert resp.status == 200
    finally:
        stopped = run_cli("stop", "--temp-dir", str(root), env=env, cwd=tmp_path)
    assert "Stopped the microray cluster" in stopped.stdout, stopped


ACTORS = """
import os, sys
import microray as ray
ray.init(address="auto")

@ray.remote
class A:
    def f(self):
        return 1

xs = [A.remote() for _ in range(3)]
assert ray.get([x.f.remote() for x in xs]) == [1, 1, 1]
ray.kill(xs[0])
d = A.options(name="d", lifetime="detached").remote()
ray.get(d.f.remote())
if sys.argv[1] == "crash":
    os._exit(1)  # a driver gone without a word: the GCS ends its actors' streams
"""


def test_gcs_err_stays_clean_through_actors_and_stop(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    import subprocess
    import sys

    started = run_cli("start", "--head", "--num-cpus", "2", "--dashboard", "none", env=env, cwd=tmp_path, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        for how in ("exit", "crash"):
            subprocess.run([sys.executable, "-c", ACTORS, how], env=env, cwd=tmp_path, timeout=120,
                           capture_output=True, check=how == "exit")
    finally:
        run_cli("stop", env=env, cwd=tmp_path)
    logs = Path(env["MICRORAY_SESSION_ROOT"]) / "session_latest" / "logs"
    assert "gcs_stopped" in (logs / "gcs.log").read_text()
    err = (logs / "gcs.err").read_text()
    assert "Task was destroyed" not in err and "aclose()" not in err and "never retrieved" not in err, err


LOOP = """
import time
import microray as ray
ray.init(address="auto")

@ray.remote
def f(x):
    time.sleep(0.05)
    return x

ray.get([f.remote(i) for i in range(4)])
print("running", flush=True)
while True:
    ray.get([f.remote(i) for i in range(4)])
"""


def test_stop_under_a_driver_is_said_once(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    import subprocess
    import sys

    from microray.testing.processes import read_marker

    started = run_cli("start", "--head", "--num-cpus", "2", "--dashboard", "none", env=env, cwd=tmp_path, timeout=120)
    assert started.returncode == 0, started.stderr
    driver = subprocess.Popen([sys.executable, "-c", LOOP], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        read_marker(driver, "running", timeout=120)
    finally:
        run_cli("stop", env=env, cwd=tmp_path)
    try:
        _, err = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode != 0
    assert err.count("node_stopped") == 1, err
    assert "lease_request_failed" not in err and "Cancelling all calls" not in err, err
    assert "RaySystemError: the node this process is connected to was stopped" in err, err
