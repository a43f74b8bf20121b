"""Ids of jobs, nodes, workers, tasks and objects.

Task ids are 16 bytes: an 8-byte random prefix per process and an 8-byte
counter, so making one costs a few hundred nanoseconds. An object id is its
task id plus a 4-byte return index (puts use index 0 of a fresh "put task").
"""

from __future__ import annotations

import builtins
import itertools
import os
import struct
import threading
from typing import Self

TASK_ID_LEN = 16
OBJECT_ID_LEN = 20

_pack_counter = struct.Struct(">Q").pack
_pack_index = struct.Struct(">I").pack
_unpack_index = struct.Struct(">I").unpack


class _IdSource:
    """The id prefix and counter of this process; a forked child starts afresh (the
    fork hook below), so it never reuses its parent's ids."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = os.urandom(8)
        self.counter = itertools.count(1)

    def task_id(self) -> bytes:
        return self.prefix + _pack_counter(next(self.counter))


_source = _IdSource()
_lock = threading.Lock()
# a fork hook rather than an os.getpid() per id: ids are made on the put and submit paths
os.register_at_fork(after_in_child=_source.reset)


def process_prefix() -> bytes:
    """The 8 bytes every task and object id made by this process starts with."""
    return _source.prefix


def new_task_id() -> bytes:
    """A fresh, process-unique task id."""
    return _source.task_id()


def object_id(task_id: bytes, index: int) -> bytes:
    """The id of return value ``index`` (1-based for returns, 0 for puts) of ``task_id``."""
    return task_id + _pack_index(index)


def task_of(object_id_: bytes) -> bytes:
    return object_id_[:TASK_ID_LEN]


def index_of(object_id_: bytes) -> int:
    return _unpack_index(object_id_[TASK_ID_LEN:])[0]


def new_hex_id(nbytes: int = 14) -> str:
    """A random id for nodes, workers, leases (hex)."""
    return os.urandom(nbytes).hex()


# -- id objects with Ray's names (what ``get_runtime_context().job_id`` etc. return) ----


class BaseID:
    """An id as Ray's id classes present it: ``binary()``, ``hex()``, ``is_nil()``.

    The nil id of a class is all 0xff bytes of that class's size, as in Ray. Ids compare
    equal when their class and bytes are equal."""

    __slots__ = ("_bytes",)
    SIZE = 16

    def __init__(self, id_bytes: bytes) -> None:
        if not isinstance(id_bytes, bytes):
            raise TypeError(f"{type(self).__name__} expects bytes, got {type(id_bytes).__name__}")
        self._bytes = id_bytes

    @classmethod
    def size(cls) -> int:
        return cls.SIZE

    @classmethod
    def nil(cls) -> Self:
        return cls(b"\xff" * cls.SIZE)

    @classmethod
    def from_hex(cls, hex_id: str | bytes) -> Self:
        if isinstance(hex_id, bytes):
            hex_id = hex_id.decode()
        return cls(bytes.fromhex(hex_id))

    @classmethod
    def from_binary(cls, id_bytes: bytes) -> Self:
        return cls(id_bytes)

    @classmethod
    def from_random(cls) -> Self:
        return cls(os.urandom(cls.SIZE))

    def binary(self) -> bytes:
        return self._bytes

    def hex(self) -> str:
        return self._bytes.hex()

    def is_nil(self) -> bool:
        return not self._bytes or self._bytes == b"\xff" * len(self._bytes)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._bytes == self._bytes  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()})"

    __str__ = __repr__

    def __reduce__(self):
        return (type(self), (self._bytes,))


class UniqueID(BaseID):
    __slots__ = ()
    SIZE = 28


class JobID(BaseID):
    """A job's id: 4 bytes, the job counter of the cluster (little-endian)."""

    __slots__ = ()
    SIZE = 4

    @classmethod
    def from_int(cls, value: int) -> Self:
        return cls(value.to_bytes(cls.SIZE, "little"))

    def int(self) -> builtins.int:
        return builtins.int.from_bytes(self._bytes, "little")


class NodeID(BaseID):
    __slots__ = ()
    SIZE = 14  # new_hex_id()


class WorkerID(BaseID):
    __slots__ = ()
    SIZE = 14  # new_hex_id()


class ActorID(BaseID):
    __slots__ = ()
    SIZE = 16


class TaskID(BaseID):
    __slots__ = ()
    SIZE = TASK_ID_LEN


class PlacementGroupID(BaseID):
    __slots__ = ()
    SIZE = 18
