"""What a process owns, as rows for the state API and ``microray memory``."""

from __future__ import annotations

import os
from typing import Any

from microray.core.memory_store import ERROR, IN_STORE, SERIALIZED, VALUE


def objects_info(cw: Any) -> list[dict[str, Any]]:
    """Id, size, location and reference types of every object ``cw`` owns."""
    out = []
    kinds = {VALUE: "INLINE", SERIALIZED: "INLINE", IN_STORE: "IN_STORE", ERROR: "ERROR"}
    for oid, (kind, payload) in list(cw.memory.entries.items()):
        if not cw.refs.owns(oid):
            continue
        counts = cw.refs.counts(oid)
        if kind == SERIALIZED:
            size = len(payload)
        elif kind == IN_STORE:
            # never read the object to learn its size: that would restore a spilled one
            size = cw.object_sizes.get(oid, -1)
        else:
            size = 0
        ref_types = []
        if counts["local"]:
            ref_types.append("LOCAL_REFERENCE")
        if counts["submitted"]:
            ref_types.append("USED_BY_PENDING_TASK")
        if counts["borrowers"]:
            ref_types.append("BORROWED")
        if counts["contained"]:
            ref_types.append("CAPTURED_IN_OBJECT")
        if counts["pinned"]:
            ref_types.append("ACTOR_HANDLE")
        if kind == IN_STORE:
            ref_types.append("PINNED_IN_MEMORY")
        out.append({
            "object_id": oid.hex(),
            "object_size": size,
            "location": kinds[kind],
            "node_id": payload if kind == IN_STORE else cw.node_id,
            "owner_worker_id": cw.worker_id,
            "owner_pid": os.getpid(),
            "job_id": cw.job_id,
            "reference_type": ",".join(ref_types) or "UNREFERENCED",
            "local_refs": counts["local"],
            "pending_task_refs": counts["submitted"],
        })
    return out
