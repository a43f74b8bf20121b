"""The operator's path: ``microray start --head --gcs-store=redis ...``, drivers with
``address="auto"``, ``microray restart-gcs`` and ``microray stop``."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from microray import node, session

from microray.util.state import list_actors, list_jobs

from .helpers import (
    MICRORAY_CLI,
    cli,
    pid_alive,
    processes_with_env,
    read_marker,
    run_driver,
    start_driver,
    wait_for,
)


pytestmark = pytest.mark.slow  # chaos, browser, real-server and heavy-I/O tests: not in `tox -e fast`

FIRST_DRIVER = """
from microray.protocol import gcs_pb2
ray.init(address="auto", namespace="ops")
@ray.remote
def square(x):
    return x * x
assert ray.get([square.remote(i) for i in range(20)], timeout=60) == [i * i for i in range(20)]

from tests.common_actors import Counter
c = ray.remote(Counter).options(name="ops-counter", lifetime="detached").remote()
assert ray.get([c.incr.remote() for _ in range(3)], timeout=60) == [1, 2, 3]
w = ray.api._worker
w.call(w.gcs.KvPut, gcs_pb2.KvPutRequest(ns="ops", key=b"k", value=b"before-restart"))
print("JOB", w.job_id, flush=True)
"""

SECOND_DRIVER = """
from microray.protocol import gcs_pb2
from microray.util.state import list_jobs
ray.init(address="auto", namespace="ops")
c = ray.get_actor("ops-counter")
assert ray.get(c.incr.remote(), timeout=60) == 4
w = ray.api._worker
r = w.call(w.gcs.KvGet, gcs_pb2.KvGetRequest(ns="ops", key=b"k"))
assert r.found and r.value == b"before-restart"
@ray.remote
def square(x):
    return x * x
assert ray.get(square.remote(12), timeout=60) == 144
print("JOBS", " ".join(sorted(j["job_id"] for j in list_jobs())), flush=True)
"""


ORPHAN_DRIVER = """
ray.init(address="auto", namespace="ops")
@ray.remote
class Owned:
    def ping(self):
        return "pong"
o = Owned.options(name="owned-by-orphan").remote()
assert ray.get(o.ping.remote(), timeout=60) == "pong"
print("READY", ray.api._worker.job_id, o._actor_id, flush=True)
time.sleep(600)
"""


def _start_head(cli_root, store_name: str, options: dict, dashboard: bool = False) -> None:
    args = ["start", "--head", "--num-cpus", "2", f"--gcs-store={store_name}"]
    if not dashboard:
        args += ["--dashboard", "none"]
    for key, value in options.items():
        args += ["--gcs-store-option", f"{key}={value}"]
    result = cli(args, cli_root.env)
    assert result.returncode == 0, f"microray start failed:\n{result.stdout}\n{result.stderr}"
    assert cli_root.handle() is not None


@pytest.mark.slow
def test_cli_head_on_redis_survives_restart_gcs(cli_root, redis_server, monkeypatch):
    options = {"url": redis_server.url, "namespace": f"cli-{os.urandom(4).hex()}"}
    _start_head(cli_root, "redis", options, dashboard=True)  # the default head, dashboard included
    handle = cli_root.handle()
    first = run_driver(FIRST_DRIVER, env=cli_root.env)
    job = first.stdout.split("JOB", 1)[1].split()[0]

    # a driver that dies while the GCS is down: its job and its (non-detached) actor end
    # once the GCS is back
    orphan = start_driver(ORPHAN_DRIVER, env=cli_root.env)
    try:
        orphan_job, owned = read_marker(orphan, "READY", timeout=90).split()
        old_gcs = handle.pids["gcs"]
        os.kill(old_gcs, signal.SIGKILL)
        orphan.kill()
        orphan.wait(10)
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait(10)
        for stream in (orphan.stdout, orphan.stderr, orphan.stdin):
            stream.close()

    result = cli(["restart-gcs"], cli_root.env)  # the GCS is dead: just started again
    assert result.returncode == 0, f"restart-gcs failed:\n{result.stdout}\n{result.stderr}"
    assert "Restarted the GCS" in result.stdout and "store redis" in result.stdout, result.stdout
    assert not pid_alive(old_gcs)
    handle = cli_root.handle()
    assert handle is not None and handle.pids["gcs"] != old_gcs and pid_alive(handle.pids["gcs"])
    address = handle.gcs_address
    # this process is a client of the cluster as one on another machine would be
    monkeypatch.setenv("MICRORAY_TOKEN", session.read_token(handle.session_dir))
    wait_for(lambda: {j["job_id"]: j["status"] for j in list_jobs(address=address)}[orphan_job] == "FAILED",
             timeout=30, what="the dead driver's job to be FAILED (it died without saying how it ended)")
    wait_for(lambda: {a["actor_id"]: a["state"] for a in list_actors(address=address)}[owned] == "DEAD",
             timeout=30, what="the dead driver's actor to be DEAD")

    # a planned restart of a running GCS
    running_gcs = handle.pids["gcs"]
    result = cli(["restart-gcs"], cli_root.env)
    assert result.returncode == 0, f"restart-gcs failed:\n{result.stdout}\n{result.stderr}"
    assert not pid_alive(running_gcs)
    handle = cli_root.handle()

    second = run_driver(SECOND_DRIVER, env=cli_root.env)
    jobs = second.stdout.split("JOBS", 1)[1].split()
    assert job in jobs and orphan_job in jobs and len(jobs) == 3, jobs

    pids = [p for p in handle.pids.values() if p]
    of_head = {p.pid for p in processes_with_env("MICRORAY_SESSION_ROOT", cli_root.root)}
    assert set(pids) <= of_head, (pids, of_head)  # GCS, raylet, dashboard (and workers)
    result = cli(["stop"], cli_root.env)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: not processes_with_env("MICRORAY_SESSION_ROOT", cli_root.root), timeout=20,
             what="every process of the head (also the restarted GCS, workers, actors) to stop")
    assert node.current_cluster(cli_root.root) is None


def test_restart_gcs_refuses_to_lose_a_memory_clusters_state(cli_root):
    result = cli(["restart-gcs"], cli_root.env)
    assert result.returncode != 0 and "No running microray cluster" in result.stderr, result.stderr
    _start_head(cli_root, "memory", {})
    gcs = cli_root.handle().pids["gcs"]
    result = cli(["restart-gcs"], cli_root.env)
    assert result.returncode != 0, result.stdout
    assert "'memory'" in result.stderr and "--allow-state-loss" in result.stderr, result.stderr
    assert pid_alive(gcs), "the refused restart stopped the GCS anyway"


@pytest.mark.slow
def test_blocking_head_keeps_running_through_restart_gcs(cli_root, redis_server):
    """``microray start --head --block`` supervises its node; a GCS restarted by
    ``microray restart-gcs`` (or killed and not yet restarted) must not stop the node."""
    options = {"url": redis_server.url, "namespace": f"blk-{os.urandom(4).hex()}"}
    args = [MICRORAY_CLI, "start", "--head", "--block", "--num-cpus", "1", "--dashboard", "none", "--gcs-store=redis",
            "--gcs-store-option", f"url={options['url']}", "--gcs-store-option", f"namespace={options['namespace']}"]
    blocker = subprocess.Popen(args, env=cli_root.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        handle = wait_for(cli_root.handle, timeout=60, what="the blocking head to start")
        wait_for(lambda: handle.raylet_address and pid_alive(handle.pids["raylet"]), timeout=10)
        os.kill(handle.pids["gcs"], signal.SIGKILL)
        read_marker(blocker, "The GCS", timeout=30, stream=blocker.stderr)  # "... the node keeps running"
        assert blocker.poll() is None, f"the blocking head stopped when its GCS died: {blocker.communicate()}"
        result = cli(["restart-gcs"], cli_root.env)
        assert result.returncode == 0, result.stderr
        run_driver("""
ray.init(address="auto")
@ray.remote
def f():
    return 1
assert ray.get(f.remote(), timeout=60) == 1
""", env=cli_root.env)
        assert blocker.poll() is None
        pids = [p for p in cli_root.handle().pids.values() if p]
        blocker.send_signal(signal.SIGTERM)
        assert blocker.wait(30) == 0
        wait_for(lambda: not [p for p in pids if pid_alive(p)], timeout=20, what=f"{pids} to stop with --block")
    finally:
        if blocker.poll() is None:
            blocker.kill()
            blocker.wait(10)
        blocker.stdout.close()
        blocker.stderr.close()
