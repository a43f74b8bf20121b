"""The object manager's pure decisions: the in-flight table, choosing holders, losing an
object, and which pulled copies make room (``microray.raylet.transfers``)."""

from __future__ import annotations

from microray.raylet.transfers import SecondaryCopies, TransferTable, lost_reason

X = b"\x01" * 20
Y = b"\x02" * 20


def test_two_requests_for_one_object_share_one_transfer():
    table = TransferTable("C")
    assert table.request(X, "owner:1") is True
    assert table.request(X, "owner:1") is False
    assert table.active[X].waiters == 2
    assert table.request(Y, "owner:1") is True  # another object: its own transfer
    assert table.finish(X) is not None
    assert table.request(X, "owner:1") is True  # after it ended, a new request starts again


def test_choose_source_prefers_the_owner_order_and_skips_this_node_dead_and_failed_nodes():
    table = TransferTable("C")
    table.request(X, "owner:1")
    alive = {"A", "B", "C", "D"}
    assert table.choose_source(X, ["C", "B", "D"], alive) == "B"  # never this node
    table.source_failed(X, "B", "UNAVAILABLE: killed")
    assert table.choose_source(X, ["C", "B", "D"], alive) == "D"
    assert table.choose_source(X, ["B", "E"], alive) is None  # E is not alive, B failed


def test_lost_reason_names_the_object_and_each_holder():
    why = lost_reason(X, ["B", "D"], {"B": "UNAVAILABLE: connection refused"}, {"B"})
    assert X.hex() in why
    assert "node B: UNAVAILABLE: connection refused" in why
    assert "node D: not an alive node of the cluster" in why


def test_lost_reason_when_the_owner_knows_no_copy_or_says_why():
    assert "knows of no node" in lost_reason(X, [], {}, set())
    said = lost_reason(X, ["B"], {}, {"B"}, owner_said="its owner (h:1) is unreachable: UNAVAILABLE")
    assert said == f"Object {X.hex()} is lost: its owner (h:1) is unreachable: UNAVAILABLE"


def test_secondary_copies_evict_oldest_first_and_keep_what_is_asked():
    copies = SecondaryCopies()
    copies.add(X, 100, "o1")
    copies.add(Y, 50, "o2")
    z = b"\x03" * 20
    copies.add(z, 30, "o1")
    assert copies.total_bytes == 180 and len(copies) == 3
    # 200 used of 300: 150 more need 50 freed -> the oldest, X
    assert copies.to_evict(150, 200, 300) == [X]
    # enough room: nothing goes
    assert copies.to_evict(50, 200, 300) == []
    # X kept (being read by a transfer): Y then z
    assert copies.to_evict(160, 200, 300, keep={X}) == [Y, z]
    # more than the copies hold: all of them, and no more
    assert copies.to_evict(1000, 200, 300) == [X, Y, z]


def test_secondary_copies_by_owner():
    copies = SecondaryCopies()
    copies.add(X, 1, "o1")
    copies.add(Y, 1, "o2")
    assert copies.of_owner("o1") == [X]
    assert copies.owners() == {"o1", "o2"}
    assert copies.remove(X) is True and copies.remove(X) is False
    assert X not in copies and Y in copies
