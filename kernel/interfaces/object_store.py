"""``ObjectStore``: a node's store for large, immutable objects.

Every process of a node opens its own instance with the same ``namespace`` (the
factory's first argument) and sees the same objects: a worker seals an object
and the driver on the same node reads it with no copy.

Object ids are ``bytes`` (at most 32). An object is written in two steps:
``create`` returns a writable buffer of exactly ``size`` bytes, ``seal`` makes
it visible. Until sealed an object is invisible to ``get``/``contains`` and a
writer that crashes before sealing leaves nothing visible. Sealed objects are
immutable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectStoreUsage:
    """Bytes in memory, bytes spilled to disk, the capacity, and object counts."""

    used_bytes: int
    capacity_bytes: int
    num_objects: int
    spilled_bytes: int = 0
    num_spilled: int = 0


@runtime_checkable
class ObjectStore(Protocol):
    """The contract every object store backend meets (see ``ObjectStoreContract``)."""

    def create(self, object_id: bytes, size: int) -> memoryview:
        """Reserve ``size`` bytes and return a writable buffer for them.

        Raises ``FileExistsError`` when the id exists (sealed or being written) and
        ``ObjectStoreFullError`` when there is no room even after spilling or
        evicting what can be; the message gives the size asked for and the capacity."""

    def seal(self, object_id: bytes) -> None:
        """Make a created object visible to every process. The buffer from
        ``create`` must not be written afterwards."""

    def abort(self, object_id: bytes) -> None:
        """Drop an object created but not sealed."""

    def put(self, object_id: bytes, data: bytes | memoryview) -> None:
        """``create`` + copy + ``seal`` in one call."""

    def get(self, object_id: bytes) -> memoryview | None:
        """A read-only, zero-copy view of a sealed object, or None when absent.
        The view stays valid as long as it is referenced, even if the object
        is deleted meanwhile. A spilled object is restored first; when the
        memory is all held by readers it is read from its spill copy instead
        (it stays spilled), so ``get`` of a stored object does not fail for
        lack of room."""

    def contains(self, object_id: bytes) -> bool:
        """Whether a sealed object with this id exists (in memory or spilled)."""

    def delete(self, object_id: bytes) -> bool:
        """Delete a sealed object (memory and spill copy). Returns True when it existed.
        Readers holding a view keep reading valid data."""

    def object_ids(self, prefix: bytes = b"") -> list[bytes]:
        """Ids of the sealed objects starting with ``prefix`` (the raylet frees a dead
        owner's objects by the id prefix of that process)."""

    def usage(self) -> ObjectStoreUsage:
        """Current usage of the whole node's store."""

    def close(self) -> None:
        """Release this process's mappings. Other processes keep their objects."""

    def destroy(self) -> None:
        """Delete every object and the backing storage of the namespace (node shutdown)."""
