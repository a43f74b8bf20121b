"""``LeaseManager``: which requests are granted to which idle worker, which workers
to start, and the node's resources through grants, returns, blocking and exits."""

from __future__ import annotations

import pytest

from microray.raylet.leases import LeaseManager, PendingLease


@pytest.fixture
def lm() -> LeaseManager:
    return LeaseManager({"CPU": 2.0, "GPU": 1.0})


def _lease(lm: LeaseManager, resources: dict[str, float], **kw: object) -> PendingLease:
    lease = PendingLease(lm.new_lease_id(), resources, **kw)  # type: ignore[arg-type]
    lm.submit(lease)
    return lease


def _idle_worker(lm: LeaseManager, worker_id: str, env_hash: str = "") -> None:
    lm.worker_started(worker_id, pid=hash(worker_id) & 0xFFFF, env_hash=env_hash)
    lm.worker_registered(worker_id, f"addr-{worker_id}")


def test_no_idle_worker_starts_one_per_grantable_request(lm: LeaseManager) -> None:
    _lease(lm, {"CPU": 1})
    _lease(lm, {"CPU": 1})
    _lease(lm, {"CPU": 1})  # would not fit once the first two hold their CPUs
    grants, to_start = lm.dispatch()
    assert grants == []
    assert to_start == {"": 2}
    grants, to_start = lm.dispatch()  # the two are still starting: start no more
    assert to_start == {}
    assert len(lm.pending) == 3


def test_registered_worker_gets_the_oldest_request(lm: LeaseManager) -> None:
    first = _lease(lm, {"CPU": 1})
    _lease(lm, {"CPU": 1})
    lm.dispatch()
    _idle_worker(lm, "w1")
    grants, to_start = lm.dispatch()
    assert [(g.lease.lease_id, g.worker.worker_id) for g in grants] == [(first.lease_id, "w1")]
    assert lm.starting == {"": 1}  # one of the two started workers has arrived
    assert to_start == {}
    assert lm.available["CPU"] == 1.0
    assert lm.workers["w1"].state == "LEASED"
    assert lm.by_lease[first.lease_id] == "w1"


def test_workers_are_matched_by_runtime_env(lm: LeaseManager) -> None:
    _idle_worker(lm, "plain")
    lease = _lease(lm, {"CPU": 1}, env_hash="env-x")
    grants, to_start = lm.dispatch()
    assert grants == []
    assert to_start == {"env-x": 1}
    _idle_worker(lm, "x", env_hash="env-x")
    grants, _ = lm.dispatch()
    assert [(g.lease, g.worker.worker_id) for g in grants] == [(lease, "x")]


def test_request_that_does_not_fit_waits_without_starting_a_worker(lm: LeaseManager) -> None:
    _lease(lm, {"GPU": 2})
    assert not lm.feasible({"GPU": 2})
    grants, to_start = lm.dispatch()
    assert (grants, to_start) == ([], {})
    assert len(lm.pending) == 1


def test_release_returns_resources_and_the_worker(lm: LeaseManager) -> None:
    _idle_worker(lm, "w1")
    lease = _lease(lm, {"CPU": 1, "GPU": 1})
    lm.dispatch()
    assert lm.available == {"CPU": 1.0, "GPU": 0.0}
    w = lm.release(lease.lease_id)
    assert w is not None and w.state == "IDLE" and w.held == {}
    assert lm.available == {"CPU": 2.0, "GPU": 1.0}
    assert lm.release(lease.lease_id) is None  # twice: nothing more to give back
    assert lm.available == {"CPU": 2.0, "GPU": 1.0}


def test_actor_lease_holds_only_what_it_asked_to_hold(lm: LeaseManager) -> None:
    """An actor is scheduled with 1 CPU but holds 0 while it lives (Ray's default)."""
    _idle_worker(lm, "w1")
    _lease(lm, {"CPU": 1}, hold={}, is_actor=True)
    grants, _ = lm.dispatch()
    assert grants[0].worker.is_actor
    assert lm.available["CPU"] == 2.0


def test_blocked_worker_lends_its_cpu_back(lm: LeaseManager) -> None:
    _idle_worker(lm, "w1")
    _lease(lm, {"CPU": 2})
    lm.dispatch()
    assert lm.available["CPU"] == 0.0
    assert lm.set_blocked("w1", True)
    assert not lm.set_blocked("w1", True)  # already blocked
    assert lm.available["CPU"] == 2.0
    assert lm.set_blocked("w1", False)
    assert lm.available["CPU"] == 0.0
    assert not lm.set_blocked("nobody", True)


@pytest.mark.parametrize("end", ["release", "exit"])
def test_blocked_worker_gives_back_its_other_resources_at_the_end(lm: LeaseManager, end: str) -> None:
    """While blocked it lent back only its CPU: the GPU is still held and must return."""
    _idle_worker(lm, "w1")
    lease = _lease(lm, {"CPU": 1, "GPU": 1})
    lm.dispatch()
    lm.set_blocked("w1", True)
    assert lm.available == {"CPU": 2.0, "GPU": 0.0}
    if end == "release":
        lm.release(lease.lease_id)
    else:
        lm.worker_exited("w1")
    assert lm.available == {"CPU": 2.0, "GPU": 1.0}


def test_leased_worker_exit_frees_its_lease(lm: LeaseManager) -> None:
    _idle_worker(lm, "w1")
    lease = _lease(lm, {"CPU": 1})
    lm.dispatch()
    w = lm.worker_exited("w1")
    assert w is not None and w.state == "DEAD"
    assert lease.lease_id not in lm.by_lease
    assert lm.available["CPU"] == 2.0
    assert lm.worker_exited("w1") is None


def test_worker_dying_while_starting_is_started_again(lm: LeaseManager) -> None:
    _lease(lm, {"CPU": 1})
    _, to_start = lm.dispatch()
    assert to_start == {"": 1}
    lm.worker_started("w1", pid=11, env_hash="")
    lm.worker_exited("w1")
    assert lm.starting == {"": 0}
    _, to_start = lm.dispatch()
    assert to_start == {"": 1}


def test_cancel_drops_matching_requests(lm: LeaseManager) -> None:
    mine = _lease(lm, {"CPU": 1}, owner="me")
    _lease(lm, {"CPU": 1}, owner="other")
    assert lm.cancel(lambda p: p.owner == "me") == [mine]
    assert [p.owner for p in lm.pending] == ["other"]
    assert lm.cancel(lambda p: p.owner == "me") == []


def test_resources_never_exceed_the_total(lm: LeaseManager) -> None:
    _idle_worker(lm, "w1")
    lease = _lease(lm, {"CPU": 1})
    lm.dispatch()
    lm.set_blocked("w1", True)
    lm.release(lease.lease_id)
    assert lm.available["CPU"] == 2.0
    assert lm.counts() == {"IDLE": 1}
    assert [w.worker_id for w in lm.idle_workers()] == ["w1"]
    assert lm.worker_by_pid(lm.workers["w1"].pid) is lm.workers["w1"]
