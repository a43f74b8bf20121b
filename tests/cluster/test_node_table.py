"""The node table a raylet watches (WatchNodes) comes as deltas: after the first reply, only
the entries that changed since the caller's last reply -- an idle cluster of N nodes costs
the GCS O(N) per heartbeat period, not a full table of N entries to each of N watchers."""

from __future__ import annotations

import os

import microray as ray
from microray import rpc
from microray.protocol import common_pb2, gcs_pb2, gcs_pb2_grpc
from microray.testing.processes import wait_for


def fake_node(gcs, cpus: float = 4.0) -> str:
    node_id = os.urandom(14).hex()
    total = common_pb2.ResourceMap(amounts={"CPU": cpus})
    reply = gcs.RegisterNode(common_pb2.NodeInfo(node_id=node_id, ip="127.0.0.1", raylet_port=1, total=total,
                                                 available=total, state="ALIVE"), timeout=30)
    assert not reply.refused, reply.refused
    return node_id


def watch(gcs, last: gcs_pb2.NodeList | None) -> gcs_pb2.NodeList:
    request = gcs_pb2.WatchNodesRequest(version=-1, wait_s=0)
    if last is not None:
        request.seq, request.table_id = last.seq, last.table_id
    return gcs.WatchNodes(request, timeout=30)


def test_watch_nodes_sends_only_what_changed(make_cluster):
    # the fake nodes heartbeat only when the test says: they must not die of it meanwhile
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_dead_after_s": 120})
    with rpc.blocking_channel(cluster.address, rpc.Credentials(cluster.token)) as ch:
        gcs = gcs_pb2_grpc.GcsStub(ch)
        a, b = fake_node(gcs), fake_node(gcs)
        full = watch(gcs, None)
        assert not full.delta
        assert {a, b, cluster.head_node.node_id} <= {n.node_id for n in full.nodes}

        # b's resources change (a heartbeat): the next delta holds b, not a
        used = common_pb2.ResourceMap(amounts={"CPU": 1.0})
        assert not gcs.Heartbeat(gcs_pb2.HeartbeatRequest(node_id=b, available=used), timeout=30).dead
        delta = watch(gcs, full)
        ids = {n.node_id for n in delta.nodes}
        assert delta.delta and b in ids and a not in ids, ids
        assert next(n for n in delta.nodes if n.node_id == b).available.amounts["CPU"] == 1.0

        # a heartbeat that changes nothing is no change (only the head's own entry may move)
        same = common_pb2.ResourceMap(amounts={"CPU": 4.0})
        gcs.Heartbeat(gcs_pb2.HeartbeatRequest(node_id=a, available=same), timeout=30)
        quiet = watch(gcs, delta)
        assert quiet.delta and {n.node_id for n in quiet.nodes} <= {cluster.head_node.node_id}

        # a death is a change; a table id this GCS never gave gets the whole table
        gcs.UnregisterNode(gcs_pb2.NodeIdRequest(node_id=a), timeout=30)
        dead = watch(gcs, quiet)
        assert dead.delta and [n.state for n in dead.nodes if n.node_id == a] == ["DEAD"]
        stale = gcs_pb2.NodeList(seq=dead.seq, table_id="not-this-gcs")
        again = watch(gcs, stale)
        assert not again.delta and len(again.nodes) == len(full.nodes)


def test_raylets_cluster_view_follows_deltas(make_cluster):
    """Raylets keep their view from deltas: a node that joins after them is seen, with its
    resources, and spread work reaches it."""
    cluster = make_cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    late = cluster.add_node(num_cpus=1, resources={"late": 1})
    cluster.connect()

    @ray.remote(resources={"late": 1})
    def where() -> str:
        return ray.get_runtime_context().get_node_id()

    assert ray.get(where.remote(), timeout=60) == late.node_id
    from microray.protocol import raylet_pb2_grpc

    with rpc.blocking_channel(cluster.head_node.raylet_address, rpc.Credentials(cluster.token)) as ch:
        stub = raylet_pb2_grpc.RayletStub(ch)

        def head_sees_late_idle() -> bool:
            nodes = stub.GetClusterView(common_pb2.Empty(), timeout=10).nodes
            info = next((n for n in nodes if n.node_id == late.node_id), None)
            return info is not None and info.state == "ALIVE" and info.available.amounts.get("late") == 1.0

        wait_for(head_sees_late_idle, timeout=30, what="the head raylet's view of the late node")
