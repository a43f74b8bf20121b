"""``microray start --address`` joins a head's cluster from the command line, and
``microray stop`` ends exactly the processes this machine's ``microray start`` calls
started (each node's recorded processes), not another cluster's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from microray import node as node_mod
from microray import worker_node
from microray.testing.processes import driver_env, pid_alive, read_marker, run_driver, wait_for
from microray.util.state import list_nodes

from .conftest import REPO_ROOT, shm_entries

CLI_TIMEOUT = 120


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "microray.cli", *args], env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, cwd=str(cwd))


def group_members(leaders: set[int]) -> set[int]:
    """Live processes in the process groups led by ``leaders`` (a node's raylet, zygote, workers)."""
    out = set()
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) in leaders:
                out.add(proc.pid)
        except (psutil.Error, OSError):
            continue
    return out


class Machine:
    """``microray`` commands run with one session root (one "machine"); ``stop_all``
    always leaves nothing running."""

    def __init__(self, root: Path, cwd: Path) -> None:
        self.root = root
        self.cwd = cwd
        self.env = driver_env({"MICRORAY_SESSION_ROOT": str(root)}, path=[REPO_ROOT])

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        out = cli(*args, env=self.env, cwd=self.cwd)
        if ok:
            assert out.returncode == 0, f"microray {' '.join(args)} failed:\n{out.stdout}\n{out.stderr[-3000:]}"
        return out

    def leaders(self) -> set[int]:
        pids = {pid for r in worker_node.recorded_nodes(str(self.root)) for pid in r["pids"].values()}
        head = node_mod.current_cluster(str(self.root))
        return pids | (set(head.pids.values()) if head else set())

    def stop_all(self) -> None:
        self.run("stop", "--force", ok=False)


@pytest.fixture
def machines(tmp_path, monkeypatch):
    made: list[Machine] = []

    def make(name: str) -> Machine:
        m = Machine(tmp_path / name / "sessions", tmp_path)
        if not made:  # this process runs on the first machine: its state API finds that cluster's token
            monkeypatch.setenv("MICRORAY_SESSION_ROOT", str(m.root))
        made.append(m)
        return m

    yield make
    for m in made:
        leaders = m.leaders()
        m.stop_all()
        wait_for(lambda: not group_members(leaders), timeout=20, what="node processes to exit")


def test_join_with_cli_then_stop_ends_exactly_those_processes(machines):
    here, elsewhere = machines("here"), machines("elsewhere")
    here.run("start", "--head", "--num-cpus", "1", "--dashboard", "none")
    gcs = node_mod.current_cluster(str(here.root)).gcs_address
    joined = here.run("start", f"--address={gcs}", "--num-cpus", "1", "--resources", '{"custom": 1}',
                      "--labels", '{"zone": "b"}')
    node_id = re.search(r"Node id:\s+(\w+)", joined.stdout).group(1)
    # registered when `start` returns
    nodes = {n["node_id"]: n for n in list_nodes(address=gcs)}
    assert nodes[node_id]["state"] == "ALIVE" and nodes[node_id]["labels"] == {"zone": "b"}
    second = here.run("start", f"--address={gcs}", "--num-cpus", "1")
    second_id = re.search(r"Node id:\s+(\w+)", second.stdout).group(1)
    records = {r["node_id"]: r for r in worker_node.recorded_nodes(str(here.root))}
    assert set(records) == {node_id, second_id}
    assert len({r["session_dir"] for r in records.values()}) == 2

    # a driver here finds the cluster (address="auto"); the custom task runs on the joined node
    out = run_driver("""
        ray.init(address="auto")
        @ray.remote(resources={"custom": 1})
        def where():
            return ray.get_runtime_context().get_node_id()
        print("NODE", ray.get(where.remote()))
    """, here.env, timeout=CLI_TIMEOUT, cwd=here.cwd)
    assert f"NODE {node_id}" in out.stdout

    # another "machine"'s node (another session root) is not ours to stop
    elsewhere.run("start", "--head", "--num-cpus", "1", "--dashboard", "none")
    bystanders = group_members(elsewhere.leaders())
    ours = group_members(here.leaders())
    namespaces = {r["store_namespace"] for r in records.values()}
    assert ours and bystanders and not ours & bystanders

    stopped = here.run("stop")
    assert node_id in stopped.stdout and second_id in stopped.stdout and "Stopped the microray cluster" in stopped.stdout
    wait_for(lambda: not [p for p in ours if pid_alive(p)], timeout=20, what="this machine's node processes to exit")
    assert all(pid_alive(p) for p in bystanders), "microray stop ended processes it did not start"
    assert not worker_node.recorded_nodes(str(here.root)) and node_mod.current_cluster(str(here.root)) is None
    assert not shm_entries(namespaces)
    assert "No running microray cluster" in here.run("stop").stdout


def test_stop_force_kills_every_node_process_group(machines):
    here = machines("here")
    here.run("start", "--head", "--num-cpus", "1", "--dashboard", "none")
    gcs = node_mod.current_cluster(str(here.root)).gcs_address
    here.run("start", f"--address={gcs}", "--num-cpus", "1")
    record = worker_node.recorded_nodes(str(here.root))[0]
    wait_for(lambda: len(group_members({record["pids"]["raylet"]})) >= 3, timeout=20,
             what="the joined node's raylet, zygote and prestarted worker")
    ours = group_members(here.leaders())
    here.run("stop", "--force")
    wait_for(lambda: not [p for p in ours if pid_alive(p)], timeout=20, what="SIGKILLed node processes to go")
    wait_for(lambda: not shm_entries({record["store_namespace"]}), timeout=10,
             what="the killed node's object store namespace to be swept")


def test_join_refuses_head_flags_and_unreachable_addresses(machines, tmp_path):
    here = machines("here")
    out = here.run("start", "--address=127.0.0.1:1", "--gcs-store", "redis", ok=False)
    assert out.returncode == 2 and "--gcs-store" in out.stderr
    out = here.run("start", "--head", "--address=127.0.0.1:1", ok=False)
    assert out.returncode == 2
    here.env["MICRORAY_GCS_RPC_TIMEOUT_S"] = "1"
    out = here.run("start", "--address=127.0.0.1:1", "--num-cpus", "1", ok=False)
    assert out.returncode == 1
    assert "127.0.0.1:1" in out.stderr and "GCS" in out.stderr, out.stderr
    assert not worker_node.recorded_nodes(str(here.root))


def test_join_with_block_runs_until_terminated(machines):
    here = machines("here")
    here.run("start", "--head", "--num-cpus", "1", "--dashboard", "none")
    gcs = node_mod.current_cluster(str(here.root)).gcs_address
    blocking = subprocess.Popen([sys.executable, "-m", "microray.cli", "start", f"--address={gcs}", "--num-cpus", "1",
                                 "--block"], env=here.env, cwd=str(here.cwd), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        read_marker(blocking, "Started a microray worker node", timeout=60)
        record = worker_node.recorded_nodes(str(here.root))[0]
        wait_for(lambda: any(n["node_id"] == record["node_id"] and n["state"] == "ALIVE"
                             for n in list_nodes(address=gcs)), timeout=30, what="the node to be ALIVE")
        assert blocking.poll() is None  # still in the foreground
        blocking.terminate()
        assert blocking.wait(timeout=30) == 0
    finally:
        if blocking.poll() is None:
            blocking.kill()
            blocking.wait()
    assert not pid_alive(record["pids"]["raylet"])
    assert not worker_node.recorded_nodes(str(here.root))
    states = {n["node_id"]: n["state"] for n in list_nodes(address=gcs)}
    assert states[record["node_id"]] == "DEAD"  # it left the cluster
