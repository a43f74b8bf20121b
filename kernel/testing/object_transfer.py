"""Reading a node's raylet from a test or a benchmark: its node stats and its object
manager's counters (what it served to other nodes and pulled from them). ``node`` is a
``microray.cluster_utils.ClusterNode`` (anything with ``raylet_address`` and ``session_dir``,
whose cluster token the calls carry)."""

from __future__ import annotations

from typing import Any

from microray import rpc, session
from microray.protocol import common_pb2, object_manager_pb2, object_manager_pb2_grpc, raylet_pb2, raylet_pb2_grpc


def _channel(node: Any) -> Any:
    return rpc.blocking_channel(node.raylet_address, rpc.Credentials(session.read_token(node.session_dir)))


def transfer_stats(node: Any) -> object_manager_pb2.TransferStats:
    """The node's object-manager counters (what it served and pulled)."""
    with _channel(node) as ch:
        return object_manager_pb2_grpc.ObjectManagerStub(ch).GetTransferStats(common_pb2.Empty(), timeout=10)


def node_stats(node: Any) -> raylet_pb2.NodeStatsReply:
    """The raylet's node record (store use, workers), read now."""
    with _channel(node) as ch:
        return raylet_pb2_grpc.RayletStub(ch).GetNodeStats(common_pb2.Empty(), timeout=10)
