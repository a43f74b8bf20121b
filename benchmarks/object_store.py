"""Object store throughput: put/get of a 100 MiB numpy array, shm vs lmdb.

The array goes the way the core worker sends it: cloudpickle protocol 5 with
out-of-band buffers. ``put`` writes a small header, the pickle bytes and the raw
buffer into ``create()``'d memory and seals it; ``get`` rebuilds the array on
top of the returned view (zero-copy), and ``get+read`` also reads every byte.
Each figure is the median of ``--reps`` runs after a warm-up; every rep deletes
the previous object, as a steady workload would. Reference rows: numpy memcpy
into warm memory and into freshly created /dev/shm pages.

    .venv/bin/python benchmarks/object_store.py [--size-mib 100] [--reps 5]
"""

from __future__ import annotations

import argparse
import mmap
import os
import pickle
import statistics
import struct
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import cloudpickle
import numpy as np

from microray.plugin_manager import get_plugin_manager

_HEADER = struct.Struct("<QQ")  # pickle length, buffer length
_ALIGN = 64


def serialize(value: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
    buffers: list[pickle.PickleBuffer] = []
    data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return data, buffers


def layout(meta: bytes, raw: memoryview) -> tuple[int, int]:
    """(offset of the raw buffer, total size) for one out-of-band buffer."""
    offset = -(-(_HEADER.size + len(meta)) // _ALIGN) * _ALIGN
    return offset, offset + raw.nbytes


def put_array(store: Any, object_id: bytes, array: np.ndarray) -> None:
    meta, buffers = serialize(array)
    raw = buffers[0].raw()
    offset, total = layout(meta, raw)
    buf = store.create(object_id, total)
    _HEADER.pack_into(buf, 0, len(meta), raw.nbytes)
    buf[_HEADER.size : _HEADER.size + len(meta)] = meta
    buf[offset:total] = raw
    buf.release()
    store.seal(object_id)


def get_array(store: Any, object_id: bytes) -> np.ndarray:
    view = store.get(object_id)
    meta_len, raw_len = _HEADER.unpack_from(view, 0)
    meta = view[_HEADER.size : _HEADER.size + meta_len]
    offset = -(-(_HEADER.size + meta_len) // _ALIGN) * _ALIGN
    return pickle.loads(meta, buffers=[view[offset : offset + raw_len]])


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(reps: int, fn: Callable[[int], float]) -> float:
    fn(-1)  # warm-up
    fn(-2)
    return statistics.median(fn(i) for i in range(reps))


def bench_store(name: str, array: np.ndarray, reps: int, workdir: str) -> dict[str, float]:
    registration = get_plugin_manager().select("object_store", name)
    options = registration.validate_options("object_store", {})
    store = registration.factory(f"bench-{uuid.uuid4().hex[:8]}", 4 * array.nbytes, workdir, **options)
    nbytes = array.nbytes
    previous: list[bytes] = []

    def one_put(i: int) -> float:
        oid = b"bench-%d" % (i + 10)
        took = timed(lambda: put_array(store, oid, array))
        for old in previous:
            store.delete(old)
        previous[:] = [oid]
        return took

    def one_plain_put(i: int) -> float:
        oid = b"plain-%d" % (i + 10)
        took = timed(lambda: store.put(oid, array))
        store.delete(oid)
        return took

    try:
        put_s = median_of(reps, one_put)
        plain_s = median_of(reps, one_plain_put)
        oid = previous[0]
        back = get_array(store, oid)
        assert np.array_equal(back, array)
        del back
        get_s = median_of(reps, lambda i: timed(lambda: get_array(store, oid)))

        def get_and_read(i: int) -> float:
            start = time.perf_counter()
            got = get_array(store, oid)
            int(got.view(np.uint64).sum(dtype=np.uint64))
            return time.perf_counter() - start

        read_s = median_of(reps, get_and_read)
    finally:
        store.destroy()
    return {
        "put_gbps": nbytes / put_s / 1e9,
        "plain_put_gbps": nbytes / plain_s / 1e9,
        "get_us": get_s * 1e6,
        "get_read_gbps": nbytes / read_s / 1e9,
    }


def bench_memcpy(array: np.ndarray, reps: int) -> dict[str, float]:
    nbytes = array.nbytes
    warm = np.empty_like(array)
    warm[:] = array

    def copy_warm(i: int) -> float:
        return timed(lambda: np.copyto(warm, array))

    folder = tempfile.mkdtemp(prefix="microray-bench-", dir="/dev/shm")

    def copy_fresh(i: int) -> float:
        path = os.path.join(folder, f"seg-{i}")
        start = time.perf_counter()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, nbytes)
        mm = mmap.mmap(fd, nbytes)
        np.frombuffer(mm, np.uint8)[:] = array.view(np.uint8).reshape(-1)
        took = time.perf_counter() - start
        mm.close()
        os.close(fd)
        os.unlink(path)
        return took

    def read_warm(i: int) -> float:
        return timed(lambda: int(warm.view(np.uint64).sum(dtype=np.uint64)))

    try:
        return {
            "warm_gbps": nbytes / median_of(reps, copy_warm) / 1e9,
            "fresh_shm_gbps": nbytes / median_of(reps, copy_fresh) / 1e9,
            "read_gbps": nbytes / median_of(reps, read_warm) / 1e9,
        }
    finally:
        os.rmdir(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    array = np.random.default_rng(0).integers(0, 255, args.size_mib << 20, dtype=np.uint8)
    rows = []
    with tempfile.TemporaryDirectory(prefix="microray-bench-spill-") as workdir:
        for name in ("shm", "lmdb"):
            rows.append((name, bench_store(name, array, args.reps, workdir)))
    ref = bench_memcpy(array, args.reps)
    print(f"{args.size_mib} MiB numpy array, cloudpickle protocol 5 out-of-band, median of {args.reps}\n")
    print(f"{'backend':8} {'put GB/s':>10} {'store.put GB/s':>15} {'get (zero-copy) us':>19} {'get+read GB/s':>14}")
    for name, r in rows:
        print(
            f"{name:8} {r['put_gbps']:10.2f} {r['plain_put_gbps']:15.2f} {r['get_us']:19.1f} "
            f"{r['get_read_gbps']:14.2f}"
        )
    print(
        f"\nreference: numpy memcpy warm {ref['warm_gbps']:.2f} GB/s, into fresh /dev/shm pages "
        f"{ref['fresh_shm_gbps']:.2f} GB/s, read (sum) of warm memory {ref['read_gbps']:.2f} GB/s"
    )


if __name__ == "__main__":
    main()
