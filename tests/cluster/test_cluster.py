"""A head and worker nodes started with ``microray.cluster_utils.Cluster``: each node a real
``microray start`` with its own ports, session folder and object store; tasks reach the
nodes their resources and strategy name."""

from __future__ import annotations

import collections
import os

import pytest

import microray as ray
from microray.util.state import list_nodes

from .isolation import ISOLATIONS


@ray.remote(num_cpus=0.5)
def node_of_task(_i=0):
    import time

    time.sleep(0.1)
    return ray.get_runtime_context().get_node_id()


def test_head_and_two_worker_nodes(make_cluster):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    n1 = cluster.add_node(num_cpus=1, labels={"zone": "a"})
    n2 = cluster.add_node(num_cpus=1, resources={"custom": 1}, labels="zone=b,disk=ssd")
    cluster.wait_for_nodes()
    nodes = {n["node_id"]: n for n in list_nodes(address=cluster.address)}
    assert set(nodes) == {cluster.head_node.node_id, n1.node_id, n2.node_id}
    assert all(n["state"] == "ALIVE" for n in nodes.values())
    assert [nid for nid, n in nodes.items() if n["is_head_node"]] == [cluster.head_node.node_id]
    assert nodes[n1.node_id]["labels"] == {"zone": "a"}
    assert nodes[n2.node_id]["labels"] == {"zone": "b", "disk": "ssd"}
    assert nodes[n2.node_id]["resources_total"] == {"CPU": 1.0, "custom": 1.0, "node:127.0.0.1": 1.0}
    assert nodes[cluster.head_node.node_id]["resources_total"] == {
        "CPU": 1.0, "node:127.0.0.1": 1.0, "node:__internal_head__": 1.0}
    # each node: its own session folder, raylet port, store namespace and processes
    everything = [cluster.head_node, n1, n2]
    assert len({n.session_dir for n in everything}) == 3
    assert all(os.path.dirname(n.session_dir) == cluster.session_root for n in everything)
    assert len({n.raylet_address for n in everything}) == 3
    assert len({n.store_namespace for n in everything}) == 3
    assert len({n.raylet_pid for n in everything}) == 3

    cluster.connect()
    custom = ray.get([node_of_task.options(resources={"custom": 1}).remote(i) for i in range(4)])
    assert set(custom) == {n2.node_id}


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_spread_tasks_reach_every_node(make_cluster, isolation):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1}, isolation=isolation)
    workers = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
    cluster.wait_for_nodes()
    cluster.connect()
    counts = collections.Counter(
        ray.get([node_of_task.options(scheduling_strategy="SPREAD").remote(i) for i in range(12)])
    )
    assert set(counts) == {cluster.head_node.node_id, *(w.node_id for w in workers)}, counts


def test_driver_uses_the_head_raylet_and_tasks_see_their_node(make_cluster):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1, resources={"custom": 1})
    cluster.connect()
    assert ray.get_runtime_context().get_node_id() == cluster.head_node.node_id
    assert ray.get(node_of_task.options(resources={"custom": 1}).remote()) == worker.node_id
    assert ray.get(node_of_task.options(num_cpus=1).remote()) in {cluster.head_node.node_id, worker.node_id}


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_removed_node_leaves_the_cluster(make_cluster, isolation):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1}, isolation=isolation)
    graceful = cluster.add_node(num_cpus=1)
    killed = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    cluster.remove_node(graceful)  # leaves at once: it unregisters
    states = {n["node_id"]: n["state"] for n in list_nodes(address=cluster.address)}
    assert states[graceful.node_id] == "DEAD"
    assert states[killed.node_id] == "ALIVE"
    cluster.remove_node(killed, allow_graceful=False)
    cluster.wait_for_nodes()  # the head only: the killed node was declared dead
    assert not graceful.alive() and not killed.alive()


def test_driver_on_a_worker_nodes_ip_uses_that_nodes_raylet(make_cluster, monkeypatch):
    """A node with --node-ip-address=127.0.0.2 serves on that IP; a driver whose node_ip is
    127.0.0.2 (a driver on that "machine") takes that node's raylet as its local raylet."""
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    other = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.2", resources={"custom": 1})
    assert other.raylet_address.startswith("127.0.0.2:")
    nodes = {n["node_id"]: n for n in list_nodes(address=cluster.address)}
    assert nodes[other.node_id]["node_ip"] == "127.0.0.2"
    monkeypatch.setenv("MICRORAY_NODE_IP", "127.0.0.2")
    cluster.connect()
    assert ray.get_runtime_context().get_node_id() == other.node_id
    assert ray.get(node_of_task.options(resources={"custom": 1}).remote()) == other.node_id
    # as in Ray, each node offers 1.0 of "node:<its IP>", the head also "node:__internal_head__"
    at = {ip: node_of_task.options(num_cpus=0, resources={f"node:{ip}": 0.01}) for ip in ("127.0.0.1", "127.0.0.2")}
    assert ray.get([at["127.0.0.2"].remote(i) for i in range(4)]) == [other.node_id] * 4
    assert ray.get([at["127.0.0.1"].remote(i) for i in range(4)]) == [cluster.head_node.node_id] * 4
    head_only = node_of_task.options(num_cpus=0, resources={"node:__internal_head__": 0.01})
    assert ray.get(head_only.remote()) == cluster.head_node.node_id
    assert ray.cluster_resources()["node:127.0.0.2"] == 1.0


def test_a_killed_driver_on_a_worker_node_fails_its_job(make_cluster, tmp_path):
    """The head's GCS checks the pids of drivers on its own machine; a driver on another
    node's machine (here: that node's IP) is watched by that node's raylet, whose
    heartbeat tells the GCS when it is gone: its job ends FAILED, not RUNNING for ever."""
    from microray.testing.processes import read_marker, start_driver, wait_for
    from microray.util.state import list_jobs

    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    other = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.2")
    env = cluster.env({"node_ip": "127.0.0.2"})
    env["MICRORAY_TOKEN"] = cluster.token
    driver = start_driver(
        f"ray.init(address={cluster.address!r})\n"
        "context = ray.get_runtime_context()\n"
        "print('STARTED', context.get_node_id(), context.get_job_id(), flush=True)\n"
        "time.sleep(300)\n",
        env, tmp_path)
    try:
        node_id, job_id = read_marker(driver, "STARTED", timeout=60).split()
        assert node_id == other.node_id

        def state() -> dict:
            return {j["job_id"]: j for j in list_jobs(address=cluster.address)}[job_id]

        assert state()["status"] == "RUNNING"
        driver.kill()
        driver.wait(timeout=10)
        job = wait_for(lambda: (j := state())["status"] != "RUNNING" and j, timeout=30,
                       what=f"job {job_id} of the killed driver to end")
        assert job["status"] == "FAILED" and "without disconnecting" in job["message"], job
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate(timeout=10)
