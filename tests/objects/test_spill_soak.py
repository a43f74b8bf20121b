"""Soak: many rounds of tasks reading spilled objects while others put, free and spill,
under a store a third the size of what lives in it. No worker may die: tasks have no
retries, so a death fails the round with its cause (exit code or signal, e.g. SIGBUS
from a mapping whose file was truncated), and the raylet's log is checked for any
worker that ended other than by the raylet's own hand."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import microray as ray
from microray.testing.event_files import read_log_records

from .conftest import MB

np = pytest.importorskip("numpy")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROUNDS = 120
OBJ = 4 * MB
LIVE = 24  # 96 MB live over a 32 MB store: most of it spilled at any time


@ray.remote(max_retries=0)
def read_all(ref_list, fills):
    """Check every array (views of the store or of spill copies) element by element."""
    for a, fill in zip(ray.get(ref_list), fills):
        if a.shape != (OBJ,) or int(a.min()) != fill or int(a.max()) != fill:
            return f"wrong data: expected {fill}, got {int(a.min())}..{int(a.max())}"
    return "ok"


@ray.remote(max_retries=0)
def put_and_read(fill, ref_list):
    """Put from a worker (more spilling), then read a spilled object passed by reference."""
    own = ray.put(np.full(OBJ, fill, dtype=np.uint8))
    back = ray.get(own)
    theirs = ray.get(ref_list[0])
    return int(back[0]) == fill and int(back[-1]) == fill, int(theirs[0]), int(theirs[-1])


def _events(session_dir: str, pattern: str) -> list[dict]:
    return [record for path in Path(session_dir, "logs").glob(pattern) for record in read_log_records(path)]


def _unexpected_worker_ends(session_dir: str) -> list[dict]:
    return [r for r in _events(session_dir, "raylet-*.log")
            if r.get("event") == "worker_exited" and r.get("level") == "warning"]


def test_reading_spilled_objects_never_kills_a_worker(make_cluster):
    info = make_cluster(num_cpus=2, object_store_memory=32 * MB)
    rng = random.Random(11)
    fills = {}
    refs = {}
    for i in range(LIVE):
        fills[i] = 1 + i
        refs[i] = ray.put(np.full(OBJ, fills[i], dtype=np.uint8))
    next_fill = LIVE + 1
    spilled = 0
    for round_ in range(ROUNDS):
        spilled = max(spilled, ray.api._worker.object_store.usage().num_spilled)
        pending = []
        for _ in range(6):
            picked = rng.sample(sorted(refs), 4)
            pending.append(("read", read_all.remote([refs[k] for k in picked], [fills[k] for k in picked])))
        for _ in range(3):
            k = rng.choice(sorted(refs))
            pending.append(("put", put_and_read.remote(next_fill % 250 + 1, [refs[k]]), fills[k]))
            next_fill += 1
        for item in pending:
            got = ray.get(item[1], timeout=300)
            if item[0] == "read":
                assert got == "ok", f"round {round_}: {got}"
            else:
                assert got == (True, item[2], item[2]), f"round {round_}: {got}"
        # free a few and make new ones: deletes feed the pool, creates evict and spill
        for k in rng.sample(sorted(refs), 4):
            del refs[k]
            fills.pop(k)
        for _ in range(4):
            fills[next_fill] = next_fill % 250 + 1
            refs[next_fill] = ray.put(np.full(OBJ, fills[next_fill], dtype=np.uint8))
            next_fill += 1
        # the driver reads some spilled ones itself too
        for k in rng.sample(sorted(refs), 3):
            a = ray.get(refs[k], timeout=120)
            assert int(a.min()) == fills[k] == int(a.max())
            del a
    assert spilled >= LIVE // 2, f"the soak did not spill (at most {spilled} objects spilled)"
    assert _unexpected_worker_ends(info.session_dir) == []
    # the tasks did read spilled objects (restored, or mapped from the spill file)
    reads = [r for r in _events(info.session_dir, "worker-*.log")
             if r.get("event") in ("object_restored", "object_read_from_spill")]
    assert len(reads) >= ROUNDS, f"only {len(reads)} reads of spilled objects in workers"
