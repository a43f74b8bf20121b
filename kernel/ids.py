"""Ids of jobs, nodes, workers, tasks and objects.

Task ids are 16 bytes: an 8-byte random prefix per process and an 8-byte
counter, so making one costs a few hundred nanoseconds. An object id is its
task id plus a 4-byte return index (puts use index 0 of a fresh "put task").
"""

from __future__ import annotations

import itertools
import os
import struct
import threading

TASK_ID_LEN = 16
OBJECT_ID_LEN = 20

_pack_counter = struct.Struct(">Q").pack
_pack_index = struct.Struct(">I").pack
_unpack_index = struct.Struct(">I").unpack


class _IdSource:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = os.urandom(8)
        self.counter = itertools.count(1)
        self.pid = os.getpid()

    def task_id(self) -> bytes:
        if os.getpid() != self.pid:  # forked: never reuse the parent's ids
            self.reset()
        return self.prefix + _pack_counter(next(self.counter))


_source = _IdSource()
_lock = threading.Lock()


def process_prefix() -> bytes:
    """The 8 bytes every task and object id made by this process starts with."""
    if os.getpid() != _source.pid:
        _source.reset()
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
