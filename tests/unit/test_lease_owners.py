"""Lease bookkeeping when a lease owner dies (``LeaseManager.owner_died``): pure, no process."""

from __future__ import annotations

from microray.raylet.leases import DEAD_OWNERS_KEPT, LeaseManager, PendingLease


def manager_with_idle_workers(n: int, cpus: float = 2.0) -> LeaseManager:
    m = LeaseManager({"CPU": cpus})
    for i in range(n):
        m.worker_started(f"w{i}", 100 + i, "")
        m.worker_registered(f"w{i}", f"127.0.0.1:{9000 + i}")
    return m


def request(m: LeaseManager, owner: str, cpu: float = 1.0) -> PendingLease:
    lease = PendingLease(m.new_lease_id(), {"CPU": cpu}, owner=owner, lease_key="k")
    assert m.submit(lease)
    return lease


def test_owner_died_drops_its_requests_and_returns_its_leased_workers():
    m = manager_with_idle_workers(2)
    a1, b1 = request(m, "A"), request(m, "B")
    a2 = request(m, "A")  # waits: both CPUs are taken
    grants, _ = m.dispatch()
    assert {g.lease.lease_id for g in grants} == {a1.lease_id, b1.lease_id}
    assert m.available["CPU"] == 0.0

    dropped, held = m.owner_died("A")

    assert [p.lease_id for p in dropped] == [a2.lease_id]
    assert [w.lease_id for w in held] == [a1.lease_id]
    assert held[0].owner == "A"
    assert not m.pending
    # B's lease is untouched; A's worker is still leased until the raylet acts on it
    assert m.workers[m.by_lease[b1.lease_id]].owner == "B"
    assert m.available["CPU"] == 0.0


def test_an_idle_worker_of_a_dead_owner_is_released_to_the_pool():
    m = manager_with_idle_workers(1)
    lease = request(m, "A")
    m.dispatch()
    _, held = m.owner_died("A")
    w = m.release(held[0].lease_id)
    assert w is not None and w.state == "IDLE" and w.owner == ""
    assert m.available["CPU"] == 2.0
    # the next owner gets it
    nxt = request(m, "B")
    grants, _ = m.dispatch()
    assert [(g.lease.lease_id, g.worker.worker_id) for g in grants] == [(nxt.lease_id, w.worker_id)]
    assert lease.lease_id not in m.by_lease


def test_a_busy_worker_of_a_dead_owner_reported_exited_frees_its_resources():
    m = manager_with_idle_workers(1)
    request(m, "A")
    m.dispatch()
    _, held = m.owner_died("A")
    m.set_blocked(held[0].worker_id, True)  # it lent its CPU back while blocked in get()
    assert m.available["CPU"] == 2.0
    gone = m.worker_exited(held[0].worker_id)
    assert gone is not None and gone.state == "DEAD"
    assert m.available["CPU"] == 2.0  # not given back twice
    assert not m.by_lease and not m.workers


def test_a_request_of_a_dead_owner_is_refused_later():
    m = manager_with_idle_workers(1)
    m.owner_died("A")
    late = PendingLease(m.new_lease_id(), {"CPU": 1.0}, owner="A")
    assert not m.submit(late)
    grants, to_start = m.dispatch()
    assert not grants and not to_start and not m.pending
    # leases without an owner id (none given) are never refused
    assert m.submit(PendingLease(m.new_lease_id(), {"CPU": 1.0}))


def test_the_death_of_an_owner_without_leases_changes_nothing_else():
    m = manager_with_idle_workers(2)
    b = request(m, "B")
    m.dispatch()
    assert m.owner_died("A") == ([], [])
    assert m.owner_died("") == ([], [])
    assert m.by_lease.keys() == {b.lease_id}


def test_dead_owners_are_remembered_up_to_a_bound():
    m = LeaseManager({"CPU": 1.0})
    for i in range(DEAD_OWNERS_KEPT + 5):
        m.owner_died(f"o{i}")
    assert len(m.dead_owners) == DEAD_OWNERS_KEPT
    assert "o0" not in m.dead_owners and f"o{DEAD_OWNERS_KEPT + 4}" in m.dead_owners
