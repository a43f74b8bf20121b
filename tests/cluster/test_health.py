"""Node health: a node that stops heartbeating is declared dead within node_dead_after_s
(default 4 s) in the GCS node table, the state API, every raylet's cluster view and the
``microray_node_removed`` observer hook; a node that comes back after that is refused and
its raylet exits (no split brain)."""

from __future__ import annotations

import glob
import json
import os
import signal
import time

import grpc
import pytest
from click.testing import CliRunner

import microray as ray
from microray.cli_state import status_cmd
from microray.config import Config
from microray import rpc, session
from microray.protocol import common_pb2, raylet_pb2_grpc
from microray.testing.event_files import read_events
from microray.testing.processes import pid_alive, wait_for
from microray.util.state import list_nodes

from .node_event_plugin import ENV

PLUGIN = "tests.cluster.node_event_plugin"
DEAD_AFTER = Config().node_dead_after_s  # the default: the tests use it as it is
# a generous deadline on a loaded machine; the node is declared dead after DEAD_AFTER
DEADLINE = DEAD_AFTER + 10


def test_default_health_timeout_is_under_five_seconds():
    cfg = Config()
    assert cfg.node_dead_after_s < 5
    assert cfg.heartbeat_period_s * 4 <= cfg.node_dead_after_s  # several heartbeats may be missed


def view_states(node, about: str) -> str:
    """The state of node ``about`` in the cluster view of ``node``'s raylet."""
    with rpc.blocking_channel(node.raylet_address, rpc.Credentials(session.read_token(node.session_dir))) as ch:
        nodes = raylet_pb2_grpc.RayletStub(ch).GetClusterView(common_pb2.Empty(), timeout=10).nodes
    return next((n.state for n in nodes if n.node_id == about), "absent")


def gcs_state(cluster, node_id: str) -> str:
    return next((n["state"] for n in list_nodes(address=cluster.address) if n["node_id"] == node_id), "absent")


@pytest.fixture
def events_file(tmp_path, monkeypatch):
    path = tmp_path / "node_events.jsonl"
    monkeypatch.setenv(ENV, str(path))
    return str(path)


def test_killed_node_is_declared_dead_everywhere(make_cluster, events_file):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1, "plugins": [PLUGIN]})
    victim = cluster.add_node(num_cpus=1)
    witness = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    for node in (cluster.head_node, witness):
        wait_for(lambda: view_states(node, victim.node_id) == "ALIVE", timeout=10,
                 what=f"node {node.node_id} to see the victim ALIVE", retry_on=(grpc.RpcError,))
    added = [e["node_id"] for e in read_events(events_file) if e["hook"] == "microray_node_added"]
    assert victim.node_id in added

    cluster.remove_node(victim, allow_graceful=False)  # SIGKILL of its whole process group
    killed_at = time.monotonic()
    wait_for(lambda: gcs_state(cluster, victim.node_id) == "DEAD", timeout=DEADLINE,
             what="the GCS to declare the killed node DEAD", retry_on=(grpc.RpcError,))
    declared_after = time.monotonic() - killed_at
    # not before the timeout: the node was declared dead for its missing heartbeats
    assert declared_after >= DEAD_AFTER - 1.0, declared_after
    for node in (cluster.head_node, witness):
        wait_for(lambda: view_states(node, victim.node_id) == "DEAD", timeout=5,
                 what=f"the raylet of node {node.node_id} to see the killed node DEAD", retry_on=(grpc.RpcError,))
    removed = wait_for(
        lambda: [e for e in read_events(events_file)
                 if e["hook"] == "microray_node_removed" and e["node_id"] == victim.node_id],
        timeout=5, what="the microray_node_removed hook to fire")
    assert len(removed) == 1 and removed[0]["state"] == "DEAD"
    status = CliRunner().invoke(status_cmd, ["--address", cluster.address])
    assert status.exit_code == 0, status.output
    dead_part = status.output.split("Dead:")[1].split("Resources")[0]
    assert victim.node_id[:12] in dead_part and witness.node_id[:12] not in dead_part, status.output
    print(f"declared dead {declared_after:.1f}s after SIGKILL (node_dead_after_s={DEAD_AFTER})")

    # the cluster goes on without it
    cluster.connect()

    @ray.remote(num_cpus=1)
    def where():
        return ray.get_runtime_context().get_node_id()

    assert set(ray.get([where.remote() for _ in range(4)])) <= {cluster.head_node.node_id, witness.node_id}


def test_node_back_after_being_declared_dead_is_refused_and_exits(make_cluster):
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    victim = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    group = victim.raylet_pid  # the raylet leads its node's process group (zygote, workers)
    assert os.getpgid(group) == group
    os.killpg(group, signal.SIGSTOP)
    try:
        wait_for(lambda: gcs_state(cluster, victim.node_id) == "DEAD", timeout=DEADLINE,
                 what="the GCS to declare the stopped node DEAD", retry_on=(grpc.RpcError,))
        wait_for(lambda: view_states(cluster.head_node, victim.node_id) == "DEAD", timeout=5,
                 what="the head's raylet to see the stopped node DEAD", retry_on=(grpc.RpcError,))
    finally:
        os.killpg(group, signal.SIGCONT)
    wait_for(lambda: not pid_alive(victim.raylet_pid), timeout=20,
             what="the refused node's raylet to exit")
    logs = glob.glob(os.path.join(victim.session_dir, "logs", "raylet-*.log"))
    refused = [json.loads(line) for path in logs for line in open(path) if "node_refused_exiting" in line]
    assert refused and "declared dead" in refused[0]["reason"], logs
    # it stays dead: no second registration of that node
    assert [n["state"] for n in list_nodes(address=cluster.address) if n["node_id"] == victim.node_id] == ["DEAD"]
    # and it removed its object store on the way out
    wait_for(lambda: not [n for n in os.listdir("/dev/shm") if victim.store_namespace in n], timeout=10,
             what="the refused node's object store to be removed")


def test_health_timeout_is_the_heads_config_and_joining_nodes_follow_it(make_cluster):
    cluster = make_cluster(initialize_head=True,
                           head_node_args={"num_cpus": 1, "heartbeat_period_s": 0.2, "node_dead_after_s": 1.5})
    victim = cluster.add_node(num_cpus=1, node_dead_after_s=30)  # a node cannot loosen the cluster's timeout
    with open(os.path.join(victim.session_dir, "config.json")) as f:
        joined = json.load(f)
    assert (joined["heartbeat_period_s"], joined["node_dead_after_s"], joined["num_cpus"]) == (0.2, 1.5, 1)
    cluster.remove_node(victim, allow_graceful=False)
    killed_at = time.monotonic()
    wait_for(lambda: gcs_state(cluster, victim.node_id) == "DEAD", timeout=1.5 + 10,
             what="the GCS to declare the killed node DEAD", retry_on=(grpc.RpcError,))
    assert time.monotonic() - killed_at >= 1.0  # by its missing heartbeats, after the cluster's timeout
