"""Seeing objects: the observer hooks (created / spilled / restored / freed), the state
API (``microray.util.state.list_objects`` / ``summarize_objects``) and ``microray
memory``.

The hooks are implemented by ``tests/objects/object_event_plugin.py``, named in
``init(plugins=[...])``; it appends JSON lines to ``$TEST_OBJECT_EVENTS_FILE`` (set by
the conftest before any cluster starts, so worker processes inherit it too).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import microray as ray
from microray.util.state import list_objects, summarize_objects

from .conftest import MB, PLUGIN, read_events, spill_dir, store_used, wait_for

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(180)

OBJ = 100 * MB
SIZE = 20 * MB


def events_for(ids: set[str], kind: str) -> list[dict]:
    return [e for e in read_events() if e["event"] == kind and e.get("object_id") in ids]


def row_of(ref) -> dict:
    rows = [o for o in list_objects(limit=10_000) if o["object_id"] == ref.hex()]
    assert len(rows) == 1, f"{ref.hex()} listed {len(rows)} times"
    return rows[0]


def ref_types(ref) -> set[str]:
    return set(row_of(ref)["reference_type"].split(","))


# -- observer hooks ------------------------------------------------------------------------------
@ray.remote
def put_in_worker():
    return [ray.put(np.full(SIZE, 3, dtype=np.uint8))], os.getpid()


@pytest.mark.slow
def test_object_hooks_fire_for_created_spilled_restored_freed(make_cluster):
    make_cluster(plugins=[PLUGIN], object_store_memory=300 * MB)
    spill = spill_dir()
    refs = [ray.put(np.full(OBJ, i + 1, dtype=np.uint8)) for i in range(4)]  # the 4th spills
    ids = {r.hex() for r in refs}
    first = refs[0].hex()

    created = wait_for(lambda: (lambda ev: ev if len(ev) == 4 else None)(events_for(ids, "created")),
                       timeout=20, what="a created event per object")
    assert all(e["size"] >= OBJ and e["node_id"] == ray.api._worker.node_id for e in created), created
    assert all(e["pid"] == os.getpid() for e in created)  # the process that wrote it

    spilled = wait_for(lambda: events_for({first}, "spilled"), timeout=20, what="the oldest object spilled")
    assert spilled[0]["size"] >= OBJ and spilled[0]["path"].startswith(spill), spilled

    value = ray.get(refs[0])  # restores it (and spills another to make room)
    assert int(value[0]) == 1 and int(value.sum()) == OBJ
    del value
    restored = wait_for(lambda: events_for({first}, "restored"), timeout=20, what="the oldest object restored")
    assert restored[0]["size"] >= OBJ

    del refs
    gc.collect()
    freed = wait_for(lambda: (lambda ev: ev if len(ev) == 4 else None)(events_for(ids, "freed")),
                     timeout=20, what="a freed event per object")
    assert all(e["in_store"] for e in freed), freed

    # a worker process loads the plugin too: its put is reported from its own pid,
    # and its freeing (as the owner) when the driver drops the borrowed ref
    (wref,), wpid = ray.get(put_in_worker.remote())
    wid = wref.hex()
    ev = wait_for(lambda: events_for({wid}, "created"), timeout=20, what="the worker's created event")
    assert ev[0]["pid"] == wpid != os.getpid()
    del wref
    gc.collect()
    ev = wait_for(lambda: events_for({wid}, "freed"), timeout=20, what="the worker's freed event")
    assert ev[0]["pid"] == wpid


# -- state API -----------------------------------------------------------------------------------
@ray.remote
def hold_until(ref_list, gate):
    gate.wait()
    return len(ref_list)


@ray.remote
class Keeper:
    def keep(self, refs):
        self.refs = refs
        return True

    def drop(self):
        self.refs = None
        return True


def test_list_objects_sizes_locations_and_reference_types(cluster, gate):
    big = ray.put(np.ones(SIZE, dtype=np.uint8))
    small = ray.put(list(range(100)))  # serialized inline, in the owner's memory
    row = row_of(big)
    assert row["location"] == "IN_STORE" and SIZE <= row["object_size"] < SIZE + 4096, row
    assert row["owner_pid"] == os.getpid() and row["node_id"] == ray.api._worker.node_id
    assert "LOCAL_REFERENCE" in ref_types(big) and row["local_refs"] == 1
    srow = row_of(small)
    assert srow["location"] == "INLINE" and 0 < srow["object_size"] < 4096, srow

    # held by a pending task (nested in its argument)
    pending = hold_until.remote([big], gate)
    assert "USED_BY_PENDING_TASK" in ref_types(big)
    assert row_of(big)["pending_task_refs"] == 1
    gate.open()
    assert ray.get(pending, timeout=60) == 1
    wait_for(lambda: "USED_BY_PENDING_TASK" not in ref_types(big), timeout=10, what="the task's hold to end")

    # borrowed by an actor
    keeper = Keeper.remote()
    assert ray.get(keeper.keep.remote([big]))
    assert "BORROWED" in ref_types(big)
    assert ray.get(keeper.drop.remote())
    wait_for(lambda: "BORROWED" not in ref_types(big), timeout=10, what="the actor to stop borrowing")
    ray.kill(keeper)

    # captured in another object: only the outer object keeps it
    outer = ray.put([small])
    small_id = small.hex()
    del small
    gc.collect()
    captured = [o for o in list_objects(limit=10_000) if o["object_id"] == small_id]
    assert captured and captured[0]["reference_type"] == "CAPTURED_IN_OBJECT", captured
    del outer
    gc.collect()
    wait_for(lambda: not [o for o in list_objects(limit=10_000) if o["object_id"] == small_id],
             timeout=10, what="the captured object to go with its outer object")


def test_summarize_objects_totals(cluster):
    refs = [ray.put(np.full(SIZE, i, dtype=np.uint8)) for i in range(3)]

    def snapshot():
        # two calls, two moments: wait until nothing changed in between (earlier
        # tests' objects may still be going away)
        rows = list_objects(limit=10_000)
        summary = summarize_objects()
        same = (summary["total_objects"] == len(rows)
                and summary["total_size_bytes"] == sum(max(o["object_size"], 0) for o in rows))
        return (rows, summary) if same else None

    rows, summary = wait_for(snapshot, timeout=15, what="list_objects and summarize_objects to agree")
    ours = {r.hex() for r in refs}
    assert ours <= {o["object_id"] for o in rows}
    assert sum(summary["by_reference_type"].values()) == summary["total_objects"]
    assert summary["size_by_location"].get("IN_STORE", 0) >= 3 * SIZE
    node = summary["object_store"][ray.api._worker.node_id]
    assert node["capacity"] == 600 * MB
    # the raylet reports the store's use with its heartbeat: eventually our view
    wait_for(lambda: summarize_objects()["object_store"][ray.api._worker.node_id]["used"] == store_used(),
             timeout=15, what="the node's reported store use to match the store")
    del refs


@pytest.mark.slow
def test_listing_objects_does_not_restore_spilled_ones(make_cluster):
    make_cluster(plugins=[PLUGIN], object_store_memory=300 * MB)
    refs = [ray.put(np.full(OBJ, i, dtype=np.uint8)) for i in range(5)]
    ids = {r.hex() for r in refs}
    wait_for(lambda: len(events_for(ids, "created")) == 5, timeout=20, what="created events")
    assert events_for(ids, "spilled"), "nothing spilled: the test would prove nothing"
    assert not events_for(ids, "restored")
    rows = [o for o in list_objects(limit=10_000) if o["object_id"] in ids]
    assert len(rows) == 5 and all(o["object_size"] >= OBJ for o in rows)
    # the backend reports restores synchronously, in the process that restored (here
    # the driver, answering the state API's GetObjectsInfo): they are in the file now
    restored = events_for(ids, "restored")
    assert not restored, f"list_objects() restored {len(restored)} spilled objects"


# -- microray memory ---------------------------------------------------------------------------
def test_microray_memory_cli_lists_our_objects(cluster):
    cli = Path(sys.executable).with_name("microray")
    if not cli.exists():
        pytest.skip("no microray console script in this environment")
    big = ray.put(np.ones(SIZE, dtype=np.uint8))
    env = {k: v for k, v in os.environ.items() if k != "MICRORAY_ADDRESS"}
    address = ray.api._worker.gcs_address
    out = subprocess.run([str(cli), "memory", "--address", address, "--format", "json"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = [o for o in data["objects"] if o["object_id"] == big.hex()]
    assert len(rows) == 1 and rows[0]["location"] == "IN_STORE", rows
    assert "LOCAL_REFERENCE" in rows[0]["reference_type"] and rows[0]["object_size"] >= SIZE
    assert rows[0]["owner_pid"] == os.getpid()

    table = subprocess.run([str(cli), "memory", "--address", address], capture_output=True, text=True,
                           timeout=60, env=env)
    assert table.returncode == 0, table.stderr
    assert big.hex()[:16] in table.stdout.replace("\n", "")
    assert "Object store:" in table.stdout and "objects referenced" in table.stdout
