"""GPU ids in the raylet's lease bookkeeping (pure: no process, no socket, no clock).

A lease that holds GPUs is given GPU indices (its worker's CUDA_VISIBLE_DEVICES): whole
GPUs are never given to two leases at once, fractions share one GPU, and ids come back
when the lease is returned or its worker dies."""

from __future__ import annotations

from microray.raylet.leases import LeaseManager, PendingLease


def _granted(mgr: LeaseManager, n: int, gpus: float) -> list:
    for i in range(n):
        mgr.worker_started(f"w{len(mgr.workers)}", 100 + len(mgr.workers), "")
        mgr.worker_registered(f"w{len(mgr.workers) - 1}", "addr")
        mgr.submit(PendingLease(mgr.new_lease_id(), {"CPU": 1, "GPU": gpus}))
    grants, _ = mgr.dispatch()
    return [g.worker for g in grants]


def test_whole_gpus_go_to_one_lease_each():
    mgr = LeaseManager({"CPU": 8, "GPU": 3})
    a, b = _granted(mgr, 2, 1)
    assert sorted([*a.gpus, *b.gpus]) == [0, 1]
    (c,) = _granted(mgr, 1, 1)
    assert list(c.gpus) == [2]
    assert _granted(mgr, 1, 1) == []  # no GPU left: not granted


def test_two_gpus_for_one_lease_and_return():
    mgr = LeaseManager({"CPU": 8, "GPU": 2})
    (a,) = _granted(mgr, 1, 2)
    assert sorted(a.gpus) == [0, 1]
    mgr.release(a.lease_id)
    assert a.gpus == {} and mgr.gpu_free == [1.0, 1.0]


def test_fractions_share_a_gpu_and_come_back_when_the_worker_dies():
    mgr = LeaseManager({"CPU": 8, "GPU": 2})
    a, b = _granted(mgr, 2, 0.5)
    assert list(a.gpus) == list(b.gpus)  # packed on one GPU
    (c,) = _granted(mgr, 1, 1)
    assert list(c.gpus) != list(a.gpus)  # the whole GPU is the other one
    shared = next(iter(a.gpus))
    mgr.worker_exited(a.worker_id)
    mgr.worker_exited(b.worker_id)
    assert mgr.gpu_free[shared] == 1.0 and sorted(mgr.gpu_free) == [0.0, 1.0]
