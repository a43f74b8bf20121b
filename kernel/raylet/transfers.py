"""The object manager's decisions, with no I/O: which transfers run, which holder to pull
from next, when an object is lost, and which pulled copies make room.

``TransferTable`` is the in-flight table of one raylet, keyed by object id: the first
request for an object starts a transfer, later ones join it (one pull per node however
many tasks need the object). ``SecondaryCopies`` remembers the copies this node pulled
(the owner's node keeps the primary), oldest first, so the raylet can free them when
their owner frees the object or dies, and drop them when the store needs room.

The shell (``raylet/object_manager.py``) performs the RPCs and store writes and feeds
the outcomes back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Sequence
from dataclasses import dataclass, field


@dataclass
class Transfer:
    """One object being brought into this node's store."""

    object_id: bytes
    owner: str
    waiters: int = 1
    failed: dict[str, str] = field(default_factory=dict)  # node id -> why pulling from it failed


class TransferTable:
    """In-flight transfers of one node, by object id."""

    def __init__(self, local_node_id: str) -> None:
        self.local_node_id = local_node_id
        self.active: dict[bytes, Transfer] = {}

    def request(self, object_id: bytes, owner: str) -> bool:
        """A process of this node needs ``object_id``. True: start a transfer; False: one
        is already running and this request waits for it."""
        t = self.active.get(object_id)
        if t is not None:
            t.waiters += 1
            return False
        self.active[object_id] = Transfer(object_id, owner)
        return True

    def choose_source(self, object_id: bytes, locations: Sequence[str], alive: Container[str]) -> str | None:
        """The next node to pull from: the first location (the owner lists the node the
        object was sealed on first) that is not this node, is alive and has not failed
        this transfer yet. None when there is none left."""
        t = self.active[object_id]
        for node_id in locations:
            if node_id != self.local_node_id and node_id not in t.failed and node_id in alive:
                return node_id
        return None

    def source_failed(self, object_id: bytes, node_id: str, why: str) -> None:
        self.active[object_id].failed[node_id] = why

    def finish(self, object_id: bytes) -> Transfer | None:
        """The transfer ended (sealed, lost, or the node is stopping)."""
        return self.active.pop(object_id, None)


def lost_reason(object_id: bytes, locations: Sequence[str], failed: dict[str, str],
                alive: Container[str], owner_said: str = "") -> str:
    """Why no node could give ``object_id``: the one place the object manager decides an
    object is lost (the caller raises ``ObjectLostError`` with this text; rebuilding the
    object from its lineage would start from here)."""
    name = object_id.hex()
    if owner_said:
        return f"Object {name} is lost: {owner_said}"
    if not locations and not failed:
        return f"Object {name} is lost: its owner knows of no node that holds a copy"
    parts = []
    for node_id in locations:
        if node_id in failed:
            parts.append(f"node {node_id}: {failed[node_id]}")
        elif node_id not in alive:
            parts.append(f"node {node_id}: not an alive node of the cluster")
    for node_id, why in failed.items():
        if node_id not in locations:
            parts.append(f"node {node_id}: {why}")
    return f"Object {name} is lost: every node that held a copy failed ({'; '.join(parts)})"


class SecondaryCopies:
    """Copies this node pulled, oldest first, with their size and owner."""

    def __init__(self) -> None:
        self.copies: OrderedDict[bytes, tuple[int, str]] = OrderedDict()

    def add(self, object_id: bytes, size: int, owner: str) -> None:
        self.copies[object_id] = (size, owner)
        self.copies.move_to_end(object_id)

    def remove(self, object_id: bytes) -> bool:
        return self.copies.pop(object_id, None) is not None

    def __contains__(self, object_id: object) -> bool:
        return object_id in self.copies

    def __len__(self) -> int:
        return len(self.copies)

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.copies.values())

    def of_owner(self, owner: str) -> list[bytes]:
        return [oid for oid, (_, o) in self.copies.items() if o == owner]

    def owners(self) -> set[str]:
        return {o for _, o in self.copies.values()}

    def to_evict(self, needed: int, used: int, capacity: int, keep: Container[bytes] = ()) -> list[bytes]:
        """The oldest copies to drop so that ``needed`` more bytes fit within ``capacity``
        (given ``used``); copies in ``keep`` stay. May free less than asked when the
        copies are not enough: the store then spills or refuses as it would anyway."""
        over = used + needed - capacity
        out: list[bytes] = []
        for oid, (size, _) in self.copies.items():
            if over <= 0:
                break
            if oid in keep:
                continue
            out.append(oid)
            over -= size
        return out
