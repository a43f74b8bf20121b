"""Spillback between real nodes: the head's raylet asks its policy for every lease request
and sends the owner to the node that fits; a node that is full or dead is left out and the
request goes elsewhere; a request no node can ever fit pends, visible in ``microray status``,
the state API and the dashboard's numbers, until a node that fits it joins."""

from __future__ import annotations

import subprocess
import sys

import pytest

import microray as ray
from microray.plugins.dashboard.web.source import cluster_summary, snapshot
from microray.testing.processes import wait_for
from microray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from microray.util.state import StateClient, list_nodes, resource_demands

from .counting_policy import ENV as CALLS_ENV
from .counting_policy import read_calls


@ray.remote(num_cpus=0)
def where(_i=0):
    return ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=0, resources={"custom": 1})
class Holder:
    def node(self):
        return ray.get_runtime_context().get_node_id()


def available(cluster, node_id: str, resource: str) -> float:
    node = next(n for n in list_nodes(address=cluster.address) if n["node_id"] == node_id)
    return node["resources_available"].get(resource, 0.0)


def demands(cluster) -> dict:
    return resource_demands(list_nodes(address=cluster.address))


def test_tasks_needing_a_resource_only_one_node_has_spill_to_it(make_cluster):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node2 = cluster.add_node(num_cpus=1, resources={"custom": 1})
    cluster.wait_for_nodes()
    cluster.connect()
    got = ray.get([where.options(resources={"custom": 1}).remote(i) for i in range(8)])
    assert set(got) == {node2.node_id}


def test_a_full_node_is_passed_over_for_a_free_one(make_cluster):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node2 = cluster.add_node(num_cpus=1, resources={"custom": 1})
    node3 = cluster.add_node(num_cpus=1, resources={"custom": 1})
    cluster.wait_for_nodes()
    cluster.connect()
    holder = Holder.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node2.node_id, soft=False)).remote()
    assert ray.get(holder.node.remote()) == node2.node_id  # node 2's custom resource is taken
    wait_for(lambda: available(cluster, node2.node_id, "custom") == 0.0, timeout=20,
             what="the GCS to see node 2 full")
    got = ray.get([where.options(resources={"custom": 1}).remote(i) for i in range(6)], timeout=120)
    assert set(got) == {node3.node_id}


def test_a_dead_spillback_target_is_left_out_and_the_tasks_run_elsewhere(make_cluster):
    # the dead node stays ALIVE in every view for the whole test: the head's policy keeps
    # choosing it (soft affinity), so only the owner's fallback gets the tasks done
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_dead_after_s": 60})
    victim = cluster.add_node(num_cpus=1, resources={"custom": 1})
    other = cluster.add_node(num_cpus=1, resources={"custom": 1})
    cluster.wait_for_nodes()
    cluster.connect()
    # both nodes in the head raylet's view (the first lease request is answered from it)
    assert ray.get(where.options(resources={"custom": 1}, scheduling_strategy=NodeAffinitySchedulingStrategy(
        victim.node_id, soft=False)).remote()) == victim.node_id
    cluster.remove_node(victim, allow_graceful=False)  # SIGKILL of its process groups
    assert {n["node_id"]: n["state"] for n in list_nodes(address=cluster.address)}[victim.node_id] == "ALIVE"
    prefer_victim = NodeAffinitySchedulingStrategy(victim.node_id, soft=True)
    got = ray.get([where.options(resources={"custom": 1}, scheduling_strategy=prefer_victim, max_retries=0).remote(i)
                   for i in range(6)], timeout=120)
    assert set(got) == {other.node_id}


def status_text(cluster) -> str:
    out = subprocess.run([sys.executable, "-m", "microray.cli", "status", "--address", cluster.address],
                         env=cluster.env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_an_infeasible_task_pends_visibly_and_runs_when_a_node_that_fits_joins(make_cluster):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.connect()
    big = where.options(num_cpus=64).remote()
    shape = {"CPU": 64.0}
    wait_for(lambda: demands(cluster)["infeasible"] == [{"resources": shape, "count": 1}], timeout=20,
             what="the head to report the infeasible demand")
    ready, _ = ray.wait([big], timeout=0.5)
    assert not ready  # pending, not failed
    text = status_text(cluster)
    section = text.split("Infeasible demand", 1)[1]
    assert '{"CPU": 64.0}: 1' in section, text
    with StateClient(cluster.address) as client:
        summary = cluster_summary(snapshot(client), [])  # the dashboard's /api/v0/cluster numbers
    assert summary["demands"]["infeasible"] == [{"resources": shape, "count": 1}]

    big_node = cluster.add_node(num_cpus=64)
    assert ray.get(big, timeout=60) == big_node.node_id
    wait_for(lambda: demands(cluster) == {"pending": [], "infeasible": []}, timeout=20,
             what="the infeasible demand to go once it ran")
    assert "(none)" in status_text(cluster).split("Infeasible demand", 1)[1]


@pytest.fixture
def calls_file(tmp_path, monkeypatch):
    path = tmp_path / "policy_calls.jsonl"
    monkeypatch.setenv(CALLS_ENV, str(path))
    return str(path)


def test_a_custom_policy_is_asked_on_a_one_node_cluster(make_cluster, calls_file):
    cluster = make_cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "plugins": ["tests.cluster.counting_policy"], "scheduling_policy": "counting"})
    cluster.connect()
    head = cluster.head_node.node_id
    assert ray.get([where.remote(i) for i in range(3)]) == [head] * 3
    calls = read_calls(calls_file)
    assert calls, "the policy was never asked on a one-node cluster"
    assert all(c["nodes"] == [head] and c["local"] == head for c in calls)
    assert {c["chosen"] for c in calls} == {head}
    # a hard affinity to a node that does not exist is refused, never granted locally
    with pytest.raises(ray.exceptions.TaskUnschedulableError, match="not an alive node"):
        ray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy("f" * 56, soft=False)).remote())
