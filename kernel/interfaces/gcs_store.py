"""``GcsStore``: where the GCS keeps every table.

Modelled on Ray's ``StoreClient``: a small set of async, table-oriented
key/value operations. The GCS service stores nodes, actors, jobs, placement
groups, named actors, the internal KV and the cluster config only through this
interface, so a durable store (Redis, etcd) lets a restarted head recover all
of it.

Keys and values are ``bytes``. A *table* is a short ASCII name; backends keep
tables apart (and clusters apart, through their ``namespace`` option) however
they like, but a key in one table never shows in another.

Every method may raise ``microray.exceptions.GcsUnavailableError`` when the
server cannot be reached after a bounded retry; none may hang forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class WatchEvent:
    """One change seen by ``watch``: ``kind`` is ``"put"`` or ``"delete"``;
    ``value`` is None for a delete."""

    kind: str
    table: str
    key: bytes
    value: bytes | None


@runtime_checkable
class GcsStore(Protocol):
    """The contract every GCS store backend meets (see ``GcsStoreContract``)."""

    async def put(self, table: str, key: bytes, value: bytes, overwrite: bool = True) -> bool:
        """Store ``value``. With ``overwrite=False`` an existing key is left as it is.
        Returns True when the key was newly added."""

    async def get(self, table: str, key: bytes) -> bytes | None:
        """The value, or None when the key is absent."""

    async def multi_get(self, table: str, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """Values of the keys that exist (absent keys are left out)."""

    async def get_all(self, table: str, prefix: bytes = b"") -> dict[bytes, bytes]:
        """Every key of ``table`` starting with ``prefix``; iteration order of the
        returned dict is ascending byte order of the keys."""

    async def delete(self, table: str, key: bytes) -> bool:
        """Delete a key. Returns True when it existed."""

    async def batch_delete(self, table: str, keys: Sequence[bytes]) -> int:
        """Delete several keys; returns how many existed."""

    async def exists(self, table: str, key: bytes) -> bool:
        """Whether the key exists."""

    async def compare_and_set(
        self, table: str, key: bytes, expected: bytes | None, value: bytes
    ) -> bool:
        """Atomically set ``key`` to ``value`` if its current value equals ``expected``
        (``expected=None`` means "the key is absent"). Returns whether it was set.
        Between two clients racing on one key, exactly one wins."""

    def watch(self, table: str, prefix: bytes = b"") -> AsyncIterator[WatchEvent]:
        """Yield every later change to keys of ``table`` under ``prefix``, in the order
        they were made. Backends without the ``watch`` capability raise
        ``NotImplementedError``."""

    async def ping(self) -> None:
        """Check the server answers; raise ``GcsUnavailableError`` naming the URL and the
        connection error within a few seconds when it does not. Called at GCS start."""

    async def check_schema(self, version: int) -> None:
        """Record ``version`` on first use; raise ``ConfigError`` naming both versions when
        the store holds another one (never misread another version's data)."""

    async def close(self) -> None:
        """Release connections. Calling it twice is harmless."""
