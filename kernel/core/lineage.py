"""The owner's lineage: the specs of finished tasks whose returns may have to be rebuilt
(pure: no I/O, no clock, no lock; the io loop is its only caller).

An object that lives in a node's store is lost when that node dies with the only copy.
Its owner can rebuild it by running again the task that made it (lineage
reconstruction), when it kept that task's spec. This module decides what is kept, for
how long, and what a lost object's owner does about it:

- ``record(spec, ...)``: a task finished with at least one return in a node's store. Its
  spec is kept while any of its returns is held (``released`` says when one is freed) or
  while the kept spec of a later task takes one of its returns as an argument (that task
  may have to be rebuilt, and then its argument first). Only what can be rebuilt is kept
  whole: a normal task with ``max_retries > 0`` and a fixed number of returns; for any
  other task only the reason it cannot be rebuilt is kept, so the error can name it.
- ``max_bytes`` bounds the memory of the kept specs (their estimated size, arguments
  inlined into them included); past it the oldest specs are dropped, and their returns,
  if lost, fail with ``ObjectReconstructionFailedLineageEvictedError``.
- ``plan(object_id)``: the object is lost; the answer is ``Rebuild`` (run the spec again;
  the shell first rebuilds the arguments it owns that are lost too) or ``CannotRebuild``
  (the error class and message ``get`` raises).

Ray's rules: an object made by ``put`` is never rebuilt (its only copy is on its owner's
node, so it is lost only with its owner); nor is an actor task's return; a rebuild is a
retry of the task and uses up its ``max_retries`` like any other.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from microray import ids
from microray.core.task_spec import ARG_REF, ARG_SERIALIZED, NORMAL, TaskSpec
from microray.exceptions import (
    ObjectLostError,
    ObjectReconstructionFailedError,
    ObjectReconstructionFailedLineageEvictedError,
    ObjectReconstructionFailedMaxAttemptsExceededError,
)

SPEC_OVERHEAD_BYTES = 256  # estimated size of a spec besides its serialized arguments
PUT_INDEX = 0  # object ids of put() have index 0; a task's returns 1, 2, ...


@dataclass
class LineageEntry:
    """A finished task the owner may run again (``spec`` set), or the reason it cannot
    (``spec`` None, ``reason`` set)."""

    task_id: bytes
    spec: TaskSpec | None
    key: tuple = ()
    reason: str = ""
    held: set[bytes] = field(default_factory=set)  # its returns still held by the owner
    upstream: tuple[bytes, ...] = ()  # task ids of kept entries whose returns are its arguments
    pins: tuple[bytes, ...] = ()  # its put() arguments, whose values are held while it is kept
    downstream: int = 0  # kept entries that name this one in their upstream
    size: int = 0
    evicted: bool = False


@dataclass(frozen=True)
class Rebuild:
    """Run ``spec`` again (under scheduling key ``key``); ``args``: the objects its
    arguments reference (the shell first rebuilds those this owner made that are lost)."""

    spec: TaskSpec
    key: tuple
    args: tuple[bytes, ...]


@dataclass(frozen=True)
class CannotRebuild:
    """The object stays lost: ``get`` raises ``error``."""

    error: ObjectLostError


class Lineage:
    """The owner's kept task specs, bounded by ``max_bytes`` (estimated)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[bytes, LineageEntry] = OrderedDict()  # oldest first
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.entries)

    # -- recording ----------------------------------------------------------------------
    def record(self, spec: TaskSpec, key: tuple, held: list[bytes]) -> tuple[tuple[bytes, ...], list[bytes]]:
        """A task finished; ``held``: its returns the owner holds (one at least is in a
        node's store). A task recorded already (a rebuild or retry finishing) keeps its
        entry, with ``held`` added. Returns the arguments made by ``put`` (by the caller,
        or for a large argument value) that the caller must now hold, since a rebuild
        reads them again and nothing could make them anew (``released`` hands them back),
        and those it may let go of (of specs dropped to stay under ``max_bytes``)."""
        entry = self.entries.get(spec.task_id)
        if entry is not None:
            entry.held.update(held)
            return (), []
        reason = _why_not_rebuildable(spec)
        if reason:
            self.entries[spec.task_id] = LineageEntry(spec.task_id, None, reason=reason, held=set(held))
            return (), []
        refs = [arg[1] for arg in spec.args if arg[0] == ARG_REF]
        upstream = tuple(dict.fromkeys(
            ids.task_of(r) for r in refs if ids.index_of(r) != PUT_INDEX and ids.task_of(r) in self.entries))
        pins = tuple(dict.fromkeys(r for r in refs if ids.index_of(r) == PUT_INDEX))
        for up in upstream:
            self.entries[up].downstream += 1
        size = _estimate(spec)
        self.entries[spec.task_id] = LineageEntry(spec.task_id, spec, key, held=set(held), upstream=upstream,
                                                  pins=pins, size=size)
        self.bytes += size
        return pins, self._evict()

    def released(self, object_id: bytes) -> list[bytes]:
        """The owner freed ``object_id``: a task none of whose returns is held any more, and
        that no kept task depends on, is forgotten (and so, in turn, may be its upstream).
        Returns the put() arguments the forgotten entries held (the caller lets go of them)."""
        if ids.index_of(object_id) == PUT_INDEX:
            return []
        task_id = ids.task_of(object_id)
        entry = self.entries.get(task_id)
        if entry is None:
            return []
        entry.held.discard(object_id)
        return self._drop_if_unused(entry)

    def _drop_if_unused(self, entry: LineageEntry) -> list[bytes]:
        unpin: list[bytes] = []
        todo = [entry]
        while todo:
            e = todo.pop()
            if e.held or e.downstream > 0 or self.entries.get(e.task_id) is not e:
                continue
            del self.entries[e.task_id]
            self.bytes -= e.size
            unpin.extend(e.pins)
            for up in e.upstream:
                parent = self.entries.get(up)
                if parent is not None:
                    parent.downstream -= 1
                    todo.append(parent)
        return unpin

    def _evict(self) -> list[bytes]:
        """Past ``max_bytes``: drop the specs of the oldest entries (their returns then fail
        with LineageEvicted when lost); the entries stay, small, until their returns go.
        Returns the put() arguments the dropped specs held."""
        unpin: list[bytes] = []
        if self.bytes <= self.max_bytes:
            return unpin
        for e in self.entries.values():
            if self.bytes <= self.max_bytes:
                break
            if e.spec is None:
                continue
            e.spec = None
            e.evicted = True
            e.reason = (f"the record of the task that made it was dropped to keep the owner's lineage under "
                        f"max_lineage_bytes={self.max_bytes}")
            self.bytes -= e.size
            e.size = 0
            unpin.extend(e.pins)
            e.pins = ()
            self.evictions += 1
        return unpin

    # -- deciding -------------------------------------------------------------------------
    def plan(self, object_id: bytes, where: str) -> Rebuild | CannotRebuild:
        """``object_id`` (owned here) is lost: ``where`` says how (e.g. "its only copy was
        on node N, which died"). Rebuild it, or the error its readers get."""
        oid = object_id.hex()
        if ids.index_of(object_id) == PUT_INDEX:
            return CannotRebuild(ObjectLostError(oid, (
                f"Object {oid} is lost: it was created by put() and {where}; objects made by put() "
                "are not rebuilt (only a task's returns are)")))
        entry = self.entries.get(ids.task_of(object_id))
        if entry is None:
            return CannotRebuild(ObjectReconstructionFailedError(oid, (
                f"Object {oid} is lost: {where}, and its owner kept no record of the task that made it")))
        if entry.spec is None:
            cls: type[ObjectLostError] = ObjectReconstructionFailedError
            if entry.evicted:
                cls = ObjectReconstructionFailedLineageEvictedError
            elif entry.reason.startswith("max_retries"):
                cls = ObjectReconstructionFailedMaxAttemptsExceededError
            return CannotRebuild(cls(oid, f"Object {oid} is lost: {where}; it cannot be rebuilt: {entry.reason}"))
        spec = entry.spec
        if spec.attempt >= spec.max_retries:
            return CannotRebuild(ObjectReconstructionFailedMaxAttemptsExceededError(oid, (
                f"Object {oid} is lost: {where}; its task {spec.function_name} already ran "
                f"{spec.attempt + 1} times and max_retries={spec.max_retries} are used up")))
        args = tuple(arg[1] for arg in spec.args if arg[0] == ARG_REF)
        return Rebuild(spec, entry.key, args)

    def started_rebuild(self, task_id: bytes) -> None:
        """A rebuild of ``task_id`` was submitted: it counts as one of the task's retries."""
        entry = self.entries.get(task_id)
        if entry is not None and entry.spec is not None:
            entry.spec.attempt += 1


def _why_not_rebuildable(spec: TaskSpec) -> str:
    if spec.kind != NORMAL:
        return "it was returned by an actor method; the returns of actor tasks are not rebuilt"
    if spec.num_returns < 1:
        return "it was returned by a generator task; generator returns are not rebuilt"
    if spec.max_retries <= 0:
        return f"max_retries={spec.max_retries}: its task {spec.function_name} may not run again"
    return ""


def _estimate(spec: TaskSpec) -> int:
    """The spec's size, estimated cheaply: a fixed overhead plus its serialized arguments."""
    size = SPEC_OVERHEAD_BYTES
    for arg in spec.args:
        payload: Any = arg[1]
        if arg[0] == ARG_SERIALIZED or isinstance(payload, (bytes, str)):
            size += len(payload)
        else:
            size += 32
    return size
