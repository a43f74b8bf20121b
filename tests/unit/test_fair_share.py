"""Sharing a node between lease owners (raylet/fair_share.py, through ``LeaseManager``):
the least-served owner's requests are granted first, and owners holding more of the node
than a waiting request's owner are asked to return leases; no process, socket or clock."""

from __future__ import annotations

import pytest

from microray.raylet import fair_share
from microray.raylet.leases import LeaseManager, PendingLease

NOW = 1000.0
HOLD = 0.2


@pytest.fixture
def lm() -> LeaseManager:
    return LeaseManager({"CPU": 2.0, "GPU": 1.0})


def _request(lm: LeaseManager, owner: str, cpu: float = 1.0, **kw: object) -> PendingLease:
    lease = PendingLease(lm.new_lease_id(), {"CPU": cpu, **kw.pop("extra", {})},  # type: ignore[dict-item]
                         owner=owner, owner_address=f"addr-{owner}", **kw)  # type: ignore[arg-type]
    assert lm.submit(lease)
    return lease


def _worker(lm: LeaseManager, worker_id: str) -> None:
    lm.worker_started(worker_id, pid=hash(worker_id) & 0xFFFF, env_hash="")
    lm.worker_registered(worker_id, f"addr-{worker_id}")


def _held(lm: LeaseManager, owner: str, count: int, age: float = 5.0, cpu: float = 1.0) -> list[str]:
    """``count`` workers leased to ``owner``, granted ``age`` seconds before NOW."""
    ids = []
    for _ in range(count):
        worker_id = f"w{len(lm.workers)}"
        _worker(lm, worker_id)
        _request(lm, owner, cpu)
        grants, _ = lm.dispatch()
        assert [g.worker.worker_id for g in grants] == [worker_id]
        lm.workers[worker_id].granted_at = NOW - age
        ids.append(worker_id)
    return ids


def _asked(lm: LeaseManager) -> tuple[list[str], float | None]:
    asks, recheck = lm.leases_to_yield(NOW, HOLD)
    return [w.worker_id for w in asks], recheck


def test_a_busy_owner_returns_one_lease_to_another_owners_waiting_request(lm: LeaseManager) -> None:
    older, newer = _held(lm, "A", 1, age=9.0) + _held(lm, "A", 1, age=3.0)
    _request(lm, "A")  # A wants more: it never yields to itself
    assert _asked(lm) == ([], None)
    b = _request(lm, "B")
    assert _asked(lm) == ([older], None)  # the oldest lease of the owner holding most
    assert lm.workers[older].yield_asked
    assert _asked(lm) == ([], None)  # it is coming back: nothing more to ask
    # A returns it; B's request (its owner holds nothing) goes before A's older one
    lm.release(lm.workers[older].lease_id)
    grants, _ = lm.dispatch()
    assert [(g.lease.lease_id, g.worker.worker_id) for g in grants] == [(b.lease_id, older)]
    assert not lm.workers[older].yield_asked
    # one lease each: A's waiting request asks nothing of B (no churn between equals)
    lm.workers[older].granted_at = NOW - 5.0
    assert [p.owner for p in lm.pending] == ["A"]
    assert _asked(lm) == ([], None)
    assert lm.workers[newer].owner == "A"


def test_owners_take_turns_when_there_are_more_owners_than_cpus(lm: LeaseManager) -> None:
    a = _held(lm, "A", 1, age=9.0)[0]
    b = _held(lm, "B", 1, age=2.0)[0]
    _request(lm, "C")
    assert _asked(lm) == ([a], None)  # equal shares: the oldest lease goes
    lm.release(lm.workers[a].lease_id)
    _request(lm, "A")  # A still has work
    grants, _ = lm.dispatch()
    assert [g.lease.owner for g in grants] == ["C"]
    lm.workers[a].granted_at = NOW - 1.0  # now C's
    assert _asked(lm) == ([b], None)  # A holds nothing now: B, the oldest holder, gives one


def test_a_young_lease_is_not_asked_yet_but_checked_again_when_it_is_old_enough(lm: LeaseManager) -> None:
    _held(lm, "A", 2, age=0.05)
    _request(lm, "B")
    asks, recheck = _asked(lm)
    assert asks == [] and recheck == pytest.approx(HOLD - 0.05)


def test_actor_workers_blocked_workers_and_unhelpful_leases_are_never_asked(lm: LeaseManager) -> None:
    actor, blocked = _held(lm, "A", 2)
    lm.workers[actor].is_actor = True
    assert lm.set_blocked(blocked, True)  # lent its CPU back: one CPU is free
    _request(lm, "B", cpu=2.0)  # needs both CPUs: nothing A holds can make room
    assert _asked(lm) == ([], None)
    lm.cancel(lambda p: p.owner == "B")
    _request(lm, "B", extra={"GPU": 1.0})  # fits in the lent CPU and the free GPU
    assert _asked(lm) == ([], None)  # it waits only for a worker to start


def test_a_bigger_request_asks_for_as_many_leases_as_make_room(lm: LeaseManager) -> None:
    first, second = _held(lm, "A", 2)
    _request(lm, "B", cpu=2.0)
    asked, _ = _asked(lm)
    assert sorted(asked) == sorted([first, second])


def test_a_request_that_cannot_get_room_asks_nothing() -> None:
    lm = LeaseManager({"CPU": 2.0})
    _held(lm, "A", 1)
    _held(lm, "B", 1)
    # B holds half the node: taking A's only lease would leave A below B
    _request(lm, "B")
    assert _asked(lm) == ([], None)


def test_grant_order_interleaves_owners_by_share() -> None:
    total = {"CPU": 4.0}
    reqs = [PendingLease(f"L{i}", {"CPU": 1.0}, owner=o) for i, o in enumerate("AAABBC")]
    order = fair_share.grant_order(reqs, {"A": 0.5}, total)
    assert [p.lease_id for p in order] == ["L3", "L5", "L4", "L0", "L1", "L2"]
    # one owner: as submitted
    assert fair_share.grant_order(reqs[:3], {"A": 0.5}, total) == reqs[:3]


def test_share_is_the_largest_fraction_of_one_resource() -> None:
    assert fair_share.share({"CPU": 1.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 2.0}) == 0.5
    assert fair_share.share({"CPU": 1.0, "memory": 5.0}, {"CPU": 4.0}) == 0.25
