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
    assert nodes[n2.node_id]["resources_total"] == {"CPU": 1.0, "custom": 1.0}
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
