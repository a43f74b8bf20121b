"""Leases die with their owner, and a driver whose raylet died does not flood its stderr.

A head started with ``microray start --head --num-cpus 2`` and drivers in separate
processes (the drivers are what gets killed). A lease is owned by the process that asked
for it: a driver, or a worker running a task that submits tasks. When that process dies
(``kill -9``: it returns nothing), the raylet must cancel its waiting requests and take
back each worker it held: an idle one goes back to the pool, one still running the dead
owner's task is killed. Seen from a new driver, ``available_resources()`` is back to
``cluster_resources()`` within a few seconds and a new task runs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import subprocess
from pathlib import Path

import pytest

from microray.testing.processes import (
    driver_code,
    pid_alive,
    read_marker,
    run_driver,
    start_driver,
    wait_for,
)

from .busy_driver import FOREVER, busy_rounds
from .test_cli import StartedHead, env  # noqa: F401 -- env is a fixture used here

pytestmark = pytest.mark.timeout(240)

# Seen from a fresh driver: every lease came back (resources) and a new task runs.
CHECK_FREED = """
ray.init(address="auto")
deadline = time.monotonic() + float(sys.argv[1])
while True:
    avail, total = ray.available_resources(), ray.cluster_resources()
    if avail == total:
        break
    if time.monotonic() > deadline:
        print("NOT_FREED " + json.dumps({"available": avail, "total": total}), flush=True)
        sys.exit(3)
    time.sleep(0.1)

@ray.remote
def probe():
    return os.getpid()

print("FREED " + json.dumps({"available": avail, "task_pid": ray.get(probe.remote(), timeout=30)}), flush=True)
ray.shutdown()
"""

# The workload: rounds of ten short tasks; "LOOPING" once it runs. ``ROUND`` is
# one round (it may raise).
BUSY_DRIVER = busy_rounds(10, 5)

FREE_WITHIN_S = 15.0  # well above the few seconds it should take, for a loaded machine


@pytest.fixture
def head(env, tmp_path):  # noqa: F811 -- env is the fixture imported above
    h = StartedHead(env, tmp_path)
    out = h.start("--num-cpus", "2")
    assert out.returncode == 0, out.stderr
    yield h
    h.snapshot_tree()
    h.stop()


def check_freed(env: dict, cwd: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", "import json\n" + driver_code(CHECK_FREED), str(FREE_WITHIN_S)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("FREED ", "NOT_FREED "))]
    assert lines, f"checking driver failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    kind, _, payload = lines[-1].partition(" ")
    assert kind == "FREED", (
        f"leases of the dead owner not released within {FREE_WITHIN_S}s: {payload}\n{proc.stderr[-2000:]}"
    )
    return json.loads(payload)


def test_leases_of_a_killed_driver_come_back(head, env, tmp_path):
    """A driver with tasks in flight is killed -9: its leases come back, a new task runs."""
    driver = start_driver(BUSY_DRIVER + FOREVER, env, tmp_path)
    try:
        read_marker(driver, "LOOPING", timeout=90)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate(timeout=10)
    result = check_freed(env, tmp_path)
    assert result["available"]["CPU"] == 2.0



def test_idle_workers_of_a_killed_driver_go_back_to_the_pool(env, tmp_path):  # noqa: F811
    """Workers leased to a driver but idle when it is killed are not killed: they are
    leased again (the driver keeps idle leases for a minute here, so they are idle and
    still leased at the kill)."""
    h = StartedHead({**env, "MICRORAY_IDLE_LEASE_KEEP_S": "60"}, tmp_path)
    out = h.start("--num-cpus", "2")
    assert out.returncode == 0, out.stderr
    driver = start_driver(
        """
        ray.init(address="auto")

        @ray.remote
        def pid(meet):
            open(os.path.join(meet, str(os.getpid())), "w").close()
            while len(os.listdir(meet)) < 2:  # both run at once: two workers are leased
                time.sleep(0.01)
            return os.getpid()

        meet = os.path.join(os.getcwd(), "meet")
        os.mkdir(meet)
        print("PIDS " + " ".join(map(str, ray.get([pid.remote(meet) for _ in range(2)]))), flush=True)
        sys.stdin.readline()
        """,
        env, tmp_path, stdin=True,
    )
    try:
        held = [int(p) for p in read_marker(driver, "PIDS", timeout=90).split()]
        assert len(set(held)) == 2, held
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        result = check_freed(env, tmp_path)
        assert result["available"]["CPU"] == 2.0
        assert all(pid_alive(p) for p in held), "an idle worker of the dead driver was killed"
        assert result["task_pid"] in held, (result, held)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate(timeout=10)
        h.snapshot_tree()
        h.stop()

def test_leases_of_a_killed_nested_task_owner_come_back(head, env, tmp_path):
    """A worker running a task that submitted tasks and waits for them is killed -9: the
    workers it leased (still running its tasks) are killed and their CPUs come back."""
    pids = tmp_path / "pids"
    pids.mkdir()
    driver = start_driver(
        f"""
        PIDS = {str(pids)!r}
        ray.init(address="auto")

        @ray.remote(num_cpus=1, max_retries=0)
        def leaf(i):
            open(os.path.join(PIDS, f"leaf-{{i}}"), "w").write(str(os.getpid()))
            time.sleep(300)

        @ray.remote(num_cpus=1, max_retries=0)
        def outer():
            refs = [leaf.remote(i) for i in range(2)]
            open(os.path.join(PIDS, "outer"), "w").write(str(os.getpid()))
            ray.get(refs)

        ref = outer.remote()
        print("SUBMITTED", flush=True)
        try:
            ray.get(ref, timeout=120)
        except Exception as exc:
            print("OUTER_FAILED " + type(exc).__name__, flush=True)
        sys.stdin.readline()  # stay alive (and hold no lease) until the test is done
        """,
        env, tmp_path, stdin=True,
    )
    try:
        read_marker(driver, "SUBMITTED", timeout=90)

        def read_pids():
            names = {p.name for p in pids.iterdir()}
            if not {"outer", "leaf-0"} <= names:  # with 2 CPUs one leaf may wait for a CPU
                return None
            return {name: int((pids / name).read_text() or 0) for name in names}

        started = wait_for(read_pids, timeout=90, what="the outer task and a leaf to start")
        assert all(started.values()), started
        os.kill(started["outer"], signal.SIGKILL)
        assert read_marker(driver, "OUTER_FAILED", timeout=60)
        # the leaves ran for a dead owner: their workers are killed
        leaves = [pid for name, pid in read_pids().items() if name.startswith("leaf-")]
        wait_for(lambda: not any(pid_alive(p) for p in leaves), timeout=FREE_WITHIN_S,
                 what=f"the workers {leaves} running the dead owner's tasks to be killed")
        result = check_freed(env, tmp_path)
        assert result["available"]["CPU"] == 2.0
        assert result["task_pid"] not in leaves
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate(timeout=10)


def test_a_killed_raylet_does_not_flood_the_driver_with_identical_warnings(head, env, tmp_path):
    """The raylet under a busy driver is killed: each lease request fails, but the driver
    says once that its node is gone (node_stopped), not one line per failure."""
    driver = start_driver(
        BUSY_DRIVER + textwrap.dedent("""
        failed, stop_at = 0, None
        while stop_at is None or time.monotonic() < stop_at:
            try:
                one_round()
            except Exception:
                failed += 1
                if stop_at is None:  # the raylet is gone: go on failing for 8 s
                    stop_at = time.monotonic() + 8
        print(f"FAILED_ROUNDS {failed}", flush=True)
        sys.stderr.flush()
        os._exit(0)  # no exit-time summary: what counts is what was printed meanwhile
        """),
        env, tmp_path,
    )
    try:
        read_marker(driver, "LOOPING", timeout=90)
        os.kill(head.pids["raylet"], signal.SIGKILL)
        failed = int(read_marker(driver, "FAILED_ROUNDS", timeout=90))
        _, err = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate(timeout=10)
    assert failed >= 20, f"the driver's rounds did not keep failing ({failed}); nothing to rate-limit\n{err[-3000:]}"
    # the driver sees its node gone and says so once; each later failure says the same
    # in its error, without a warning line of its own
    said = [ln for ln in err.splitlines() if "node_stopped" in ln]
    assert len(said) == 1, f"{len(said)} node_stopped lines for {failed} failed rounds:\n{err[-3000:]}"
    lines = [ln for ln in err.splitlines() if "lease_request_failed" in ln]
    assert len(lines) <= 1, f"{len(lines)} lease_request_failed lines for {failed} failed rounds:\n" + "\n".join(lines[:10])


WATCHER = """
import asyncio, sys
from microray import config, node, rpc
from microray.raylet.owners import OwnerWatcher

async def main():
    # local_pid knows no pid: the death must be seen through the Watch stream alone,
    # as for an owner on another node; the watch calls carry the cluster's token
    credentials = rpc.Credentials(node.cluster_token("auto", config.resolve({}).session_root))
    watcher = OwnerWatcher(lambda owner, reason: print("DEAD " + owner, flush=True), lambda owner: None,
                           credentials)
    for arg in sys.argv[1:]:
        owner, address = arg.split("=")
        watcher.watch(owner, address)
    print("WATCHING", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    watcher.close()

asyncio.run(main())
"""


def test_an_owner_is_seen_to_die_through_its_watch_stream_alone(head, env, tmp_path):
    """The raylet's watch of a lease owner does not need the owner's pid (an owner on
    another node): of two watched drivers, the one killed -9 is reported dead, the live
    one is not."""
    body = """
        ray.init(address="auto")
        w = ray.api._worker
        print(f"OWNER {w.worker_id}={w.address}", flush=True)
        sys.stdin.readline()
        """
    drivers = [start_driver(body, env, tmp_path, stdin=True) for _ in range(2)]
    watcher = None
    try:
        owners = [read_marker(d, "OWNER", timeout=90) for d in drivers]
        watcher = subprocess.Popen([sys.executable, "-c", WATCHER, *owners], env=env, cwd=tmp_path,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        read_marker(watcher, "WATCHING", timeout=60)
        os.kill(drivers[0].pid, signal.SIGKILL)
        dead = read_marker(watcher, "DEAD", timeout=FREE_WITHIN_S)
        assert dead == owners[0].split("=")[0], (dead, owners)
        assert drivers[1].poll() is None
    finally:
        for proc in [*drivers, watcher]:
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.communicate(timeout=10)
