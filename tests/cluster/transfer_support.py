"""Reading a node's raylet from a test: its node stats and its object manager's counters."""

from __future__ import annotations

import grpc

from microray.protocol import common_pb2, object_manager_pb2, object_manager_pb2_grpc, raylet_pb2, raylet_pb2_grpc


def _channel(node) -> grpc.Channel:
    return grpc.insecure_channel(node.raylet_address)


def transfer_stats(node) -> object_manager_pb2.TransferStats:
    """The node's object-manager counters (what it served and pulled)."""
    with _channel(node) as ch:
        return object_manager_pb2_grpc.ObjectManagerStub(ch).GetTransferStats(common_pb2.Empty(), timeout=10)


def node_stats(node) -> raylet_pb2.NodeStatsReply:
    with _channel(node) as ch:
        return raylet_pb2_grpc.RayletStub(ch).GetNodeStats(common_pb2.Empty(), timeout=10)
