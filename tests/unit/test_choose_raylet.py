"""Which node's raylet a driver connecting to a running cluster takes (``node.choose_raylet``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from microray.node import choose_raylet, is_local_address


@dataclass
class Node:
    node_id: str
    ip: str
    is_head: bool = False
    state: str = "ALIVE"


HEAD = Node("head", "10.0.0.1", is_head=True)
WORKER = Node("worker", "10.0.0.7")
HERE = {"127.0.0.1", "10.0.0.7"}  # this machine: a worker node's machine


def choose(nodes: list[Node], ip: str = "127.0.0.1", here: set[str] = HERE) -> Node:
    return choose_raylet(nodes, ip, here.__contains__, "10.0.0.1:6379")


def test_the_node_on_the_drivers_own_ip_first() -> None:
    assert choose([HEAD, WORKER], ip="10.0.0.7").node_id == "worker"
    twin = Node("twin-head", "10.0.0.7", is_head=True)  # two nodes on one IP: the head
    assert choose([WORKER, twin], ip="10.0.0.7").node_id == "twin-head"


def test_else_a_node_serving_on_another_address_of_this_machine_not_a_remote_head() -> None:
    assert choose([HEAD, WORKER]).node_id == "worker"  # node_ip left at 127.0.0.1
    on_head_machine = {"127.0.0.1", "10.0.0.1"}
    assert choose([WORKER, HEAD], here=on_head_machine).node_id == "head"
    local_worker = Node("w2", "10.0.0.1")
    assert choose([local_worker, HEAD], here=on_head_machine).node_id == "head"  # the head first


def test_no_node_on_this_machine_is_an_error_that_says_what_to_do() -> None:
    with pytest.raises(ConnectionError) as err:
        choose([HEAD, WORKER], here={"127.0.0.1", "10.0.0.9"})
    message = str(err.value)
    assert "no node of the microray cluster at 10.0.0.1:6379 runs on this machine" in message
    assert "10.0.0.1, 10.0.0.7" in message and "microray start --address=10.0.0.1:6379" in message


def test_dead_nodes_are_never_chosen() -> None:
    with pytest.raises(ConnectionError, match="has no live node"):
        choose([Node("head", "127.0.0.1", is_head=True, state="DEAD")])
    assert choose([Node("gone", "10.0.0.7", state="DEAD"), HEAD], here={"10.0.0.7", "10.0.0.1"}).node_id == "head"


def test_local_addresses_are_those_a_socket_binds() -> None:
    assert is_local_address("127.0.0.1") and is_local_address("127.0.0.2")  # the loopback /8
    assert not is_local_address("192.0.2.1")  # TEST-NET-1: never an address of this machine
