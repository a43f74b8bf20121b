"""The actor lifecycle state machine (microray.gcs.actor_state), driven event by event:
no process, socket or clock. Each test says which transition it covers."""

from __future__ import annotations

import pickle

import pytest

from microray.gcs import actor_state as sm
from microray.gcs.actor_record import ActorRecord, ActorState, DeathCause, DeathKind, LeasedWorker, decode, encode
from microray.interfaces.scheduling import SchedulingRequest

ALIVE, DEAD = ActorState.ALIVE, ActorState.DEAD
PENDING, RESTARTING = ActorState.PENDING_CREATION, ActorState.RESTARTING


def new_record(actor_id: str = "a1", **fields) -> ActorRecord:
    base = {"actor_id": actor_id, "class_name": "Counter", "resources": {"CPU": 1.0}, "hold": {},
            "job_id": "j1", "owner": "driver:1", "creation_spec": b"spec-" + actor_id.encode()}
    return ActorRecord.from_registration({**base, **fields})


def worker(n: int, node: str = "n1") -> LeasedWorker:
    return LeasedWorker(address=f"10.0.0.1:{7000 + n}", pid=1000 + n, node_id=node, worker_id=f"w{n}",
                        lease_id=f"l{n}")


def kinds(instructions: list) -> list[str]:
    return [type(i).__name__ for i in instructions]


def published(instructions: list) -> list[tuple[str, int]]:
    return [(i.actor["state"], i.actor["num_restarts"]) for i in instructions if isinstance(i, sm.Publish)]


def alive(m: sm.ActorStateMachine, actor_id: str = "a1", n: int = 1, node: str = "n1", **fields) -> ActorRecord:
    """Register ``actor_id`` and drive it to ALIVE on worker ``n``."""
    m.handle(sm.ActorRegistered(new_record(actor_id, **fields), now=1.0))
    m.handle(sm.WorkerLeased(actor_id, 0, worker(n, node)))
    m.handle(sm.ConstructorDone(actor_id, 0, now=2.0))
    assert m.records[actor_id].state is ALIVE
    return m.records[actor_id]


def restart(m: sm.ActorStateMachine, actor_id: str, n: int, now: float = 5.0) -> list:
    """The current process of ``actor_id`` dies; it restarts on worker ``n``."""
    rec = m.records[actor_id]
    out = m.handle(sm.WorkerDied(actor_id, rec.num_restarts, sm.ExitReason.STREAM_ENDED, now=now))
    m.handle(sm.WorkerLeased(actor_id, rec.num_restarts, worker(n)))
    m.handle(sm.ConstructorDone(actor_id, rec.num_restarts, now=now + 1))
    return out


# -- creation --------------------------------------------------------------------------------
def test_normal_creation_persists_publishes_leases_watches_and_becomes_alive() -> None:
    m = sm.ActorStateMachine()
    out = m.handle(sm.ActorRegistered(new_record(strategy="SPREAD", hold={"GPU": 1}, env_key="{}"), now=1.0))
    assert kinds(out) == ["Persist", "Publish", "LeaseWorker"]
    assert published(out) == [("PENDING_CREATION", 0)]
    lease = out[2]
    assert lease == sm.LeaseWorker("a1", 0, SchedulingRequest({"CPU": 1.0}, "SPREAD", "Counter"), {"GPU": 1.0}, "{}")
    assert lease.lease_key == "actor:a1"
    assert m.records["a1"].submit_time == 1.0

    out = m.handle(sm.WorkerLeased("a1", 0, worker(1)))
    assert out == [sm.Watch("a1", 0, "10.0.0.1:7001", b"spec-a1")]
    rec = m.records["a1"]
    assert (rec.state, rec.pid, rec.node_id, rec.worker_id, rec.lease_id) == (PENDING, 1001, "n1", "w1", "l1")

    out = m.handle(sm.ConstructorDone("a1", 0, now=2.0))
    assert out == [sm.Persist("a1"), sm.Publish(rec.public())]
    assert published(out) == [("ALIVE", 0)]
    assert rec.state is ALIVE and rec.start_time == 2.0 and rec.death is None
    assert rec.public()["death_cause"] is None


def test_lease_request_names_no_node() -> None:
    """A restart may land on any node: the lease carries the scheduling request only (a node
    appears in it only when the user's strategy names one)."""
    m = sm.ActorStateMachine()
    affinity = {"type": "node_affinity", "node_id": "n7", "soft": True}
    out = m.handle(sm.ActorRegistered(new_record(strategy=affinity, max_restarts=1), now=1.0))
    assert out[-1].request == SchedulingRequest({"CPU": 1.0}, affinity, "Counter")
    m.handle(sm.WorkerLeased("a1", 0, worker(1, node="n1")))
    m.handle(sm.ConstructorDone("a1", 0, now=2.0))
    out = m.handle(sm.NodeDied("n1", "no heartbeat", now=3.0))
    lease = next(i for i in out if isinstance(i, sm.LeaseWorker))
    assert lease.incarnation == 1 and lease.request.strategy == affinity
    m.handle(sm.WorkerLeased("a1", 1, worker(2, node="n2")))
    m.handle(sm.ConstructorDone("a1", 1, now=4.0))
    assert (m.records["a1"].state, m.records["a1"].node_id) == (ALIVE, "n2")


def test_constructor_error_is_dead_never_restarted_and_its_worker_ended() -> None:
    m = sm.ActorStateMachine()
    m.handle(sm.ActorRegistered(new_record(max_restarts=3), now=1.0))
    m.handle(sm.WorkerLeased("a1", 0, worker(1)))
    out = m.handle(sm.ConstructorFailed("a1", 0, b"serialized-error", now=2.0))
    assert kinds(out) == ["Persist", "Publish", "StopWatching", "KillWorker"]
    assert out[-1] == sm.KillWorker("a1", "10.0.0.1:7001")
    rec = m.records["a1"]
    assert rec.state is DEAD and rec.num_restarts == 0 and rec.end_time == 2.0
    assert rec.death == DeathCause(DeathKind.CREATION_FAILED, "the actor's constructor raised an error")
    assert rec.public()["creation_error"] == b"serialized-error" and rec.address == ""


def test_lease_refused_for_good_is_dead_never_restarted() -> None:
    """A hard node affinity to a node that is not alive: no worker will ever come."""
    m = sm.ActorStateMachine()
    m.handle(sm.ActorRegistered(new_record(max_restarts=3), now=1.0))
    out = m.handle(sm.LeaseRefused("a1", 0, "Counter has a hard node affinity to node 'x'", now=2.0))
    assert kinds(out) == ["Persist", "Publish"]
    rec = m.records["a1"]
    assert rec.state is DEAD and rec.num_restarts == 0 and rec.end_time == 2.0
    assert rec.death == DeathCause(
        DeathKind.CREATION_FAILED, "the actor cannot be scheduled: Counter has a hard node affinity to node 'x'")
    # a refusal for an incarnation that already has a worker, or of a dead actor, is stale
    m2 = sm.ActorStateMachine()
    alive(m2)
    assert m2.handle(sm.LeaseRefused("a1", 0, "late", now=3.0)) == []
    assert m.handle(sm.LeaseRefused("a1", 0, "again", now=3.0)) == []
    assert m.ignored == 1 and m2.ignored == 1


@pytest.mark.parametrize("max_restarts", [0, 2])
def test_death_during_creation(max_restarts: int) -> None:
    """The process dies while its constructor runs: it counts like any death."""
    m = sm.ActorStateMachine()
    m.handle(sm.ActorRegistered(new_record(max_restarts=max_restarts), now=1.0))
    m.handle(sm.WorkerLeased("a1", 0, worker(1)))
    out = m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=2.0))
    rec = m.records["a1"]
    if max_restarts:
        assert kinds(out) == ["Persist", "Publish", "LeaseWorker"]
        assert (rec.state, rec.num_restarts, rec.address) == (RESTARTING, 1, "")
        assert out[-1].incarnation == 1
    else:
        assert kinds(out) == ["Persist", "Publish"]
        assert rec.state is DEAD and rec.death.kind is DeathKind.RESTARTS_EXHAUSTED
        assert "worker process (pid 1001) died unexpectedly" in rec.death.message


def test_unreachable_worker_counts_as_dead() -> None:
    m = sm.ActorStateMachine()
    m.handle(sm.ActorRegistered(new_record(), now=1.0))
    m.handle(sm.WorkerLeased("a1", 0, worker(1)))
    m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.UNREACHABLE, now=2.0))
    assert m.records["a1"].state is DEAD


# -- restarts --------------------------------------------------------------------------------
def test_restart_after_worker_death() -> None:
    m = sm.ActorStateMachine()
    rec = alive(m, max_restarts=2)
    out = m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=3.0))
    assert kinds(out) == ["Persist", "Publish", "LeaseWorker"]
    assert published(out) == [("RESTARTING", 1)]
    assert (rec.state, rec.num_restarts, rec.address) == (RESTARTING, 1, "")
    assert m.handle(sm.WorkerLeased("a1", 1, worker(2))) == [sm.Watch("a1", 1, "10.0.0.1:7002", b"spec-a1")]
    out = m.handle(sm.ConstructorDone("a1", 1, now=4.0))
    assert published(out) == [("ALIVE", 1)]
    assert rec.state is ALIVE and rec.pid == 1002 and rec.start_time == 2.0  # first start kept


def test_restarts_exhausted_is_dead_with_the_cause() -> None:
    m = sm.ActorStateMachine()
    rec = alive(m, max_restarts=2)
    restart(m, "a1", 2)
    restart(m, "a1", 3)
    out = m.handle(sm.WorkerDied("a1", 2, sm.ExitReason.STREAM_ENDED, now=9.0))
    assert kinds(out) == ["Persist", "Publish"]
    assert (rec.state, rec.num_restarts, rec.address, rec.end_time) == (DEAD, 2, "", 9.0)
    assert rec.death == DeathCause(
        DeathKind.RESTARTS_EXHAUSTED,
        "the actor's worker process (pid 1003) died unexpectedly and max_restarts=2 restarts were used up")


def test_unlimited_restarts() -> None:
    m = sm.ActorStateMachine()
    rec = alive(m, max_restarts=-1)
    for n in range(2, 12):
        restart(m, "a1", n)
    assert rec.state is ALIVE and rec.num_restarts == 10


def test_events_of_an_earlier_incarnation_are_ignored() -> None:
    m = sm.ActorStateMachine()
    rec = alive(m, max_restarts=1)
    restart(m, "a1", 2)
    before = m.ignored
    assert m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=9.0)) == []
    assert m.handle(sm.ConstructorDone("a1", 0, now=9.0)) == []
    assert m.handle(sm.ConstructorFailed("a1", 0, b"e", now=9.0)) == []
    assert m.ignored == before + 3
    assert rec.state is ALIVE and rec.num_restarts == 1


# -- kill ---------------------------------------------------------------------------------------
def test_kill_alive_no_restart_records_the_cause_before_the_process_goes() -> None:
    m = sm.ActorStateMachine()
    rec = alive(m, max_restarts=5)
    out = m.handle(sm.KillRequested("a1", no_restart=True, reason="", now=3.0))
    # persisted first (callers whose calls are lost read the cause), no state change published yet
    assert out == [sm.Persist("a1"), sm.KillWorker("a1", "10.0.0.1:7001")]
    assert rec.state is ALIVE and rec.killed
    assert rec.public()["death_cause"] == "killed by microray.kill()"
    out = m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=4.0))
    assert kinds(out) == ["Persist", "Publish"]  # no restart, whatever max_restarts says
    assert rec.state is DEAD and rec.death == DeathCause(DeathKind.KILLED, "killed by microray.kill()")


def test_kill_alive_with_restart_restarts_and_counts() -> None:
    m = sm.ActorStateMachine()
    rec = alive(m, max_restarts=1)
    assert m.handle(sm.KillRequested("a1", no_restart=False, reason="", now=3.0)) == [
        sm.KillWorker("a1", "10.0.0.1:7001")]
    assert not rec.killed and rec.death is None
    out = m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=4.0))
    assert kinds(out)[-1] == "LeaseWorker" and (rec.state, rec.num_restarts) == (RESTARTING, 1)


def test_kill_with_restart_and_none_left_is_dead() -> None:
    m = sm.ActorStateMachine()
    rec = alive(m)
    m.handle(sm.KillRequested("a1", no_restart=False, reason="", now=3.0))
    m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=4.0))
    assert rec.state is DEAD and rec.death.kind is DeathKind.RESTARTS_EXHAUSTED


def test_kill_while_waiting_for_a_worker_cancels_the_lease() -> None:
    m = sm.ActorStateMachine()
    m.handle(sm.ActorRegistered(new_record(max_restarts=3), now=1.0))
    out = m.handle(sm.KillRequested("a1", no_restart=True, reason="all references went out of scope", now=2.0))
    assert kinds(out) == ["Persist", "CancelLease", "StopWatching", "Persist", "Publish"]
    rec = m.records["a1"]
    assert rec.state is DEAD and rec.death == DeathCause(DeathKind.KILLED, "all references went out of scope")
    # a grant that was already on its way: the worker is not left idle
    assert m.handle(sm.WorkerLeased("a1", 0, worker(1))) == [sm.KillWorker("a1", "10.0.0.1:7001")]
    assert rec.state is DEAD


def test_kill_during_restart_ends_the_new_worker_and_ignores_its_constructor() -> None:
    m = sm.ActorStateMachine()
    rec = alive(m, max_restarts=3)
    m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=3.0))
    m.handle(sm.WorkerLeased("a1", 1, worker(2)))  # the constructor runs again
    out = m.handle(sm.KillRequested("a1", no_restart=True, reason="", now=4.0))
    assert kinds(out) == ["Persist", "CancelLease", "StopWatching", "KillWorker", "Persist", "Publish"]
    assert out[3] == sm.KillWorker("a1", "10.0.0.1:7002")
    assert published(out) == [("DEAD", 1)]
    assert rec.state is DEAD and rec.death.message == "killed by microray.kill()"
    assert m.handle(sm.ConstructorDone("a1", 1, now=5.0)) == []
    assert m.handle(sm.WorkerDied("a1", 1, sm.ExitReason.STREAM_ENDED, now=5.0)) == []
    assert rec.state is DEAD


def test_kill_with_restart_while_restarting_changes_nothing() -> None:
    m = sm.ActorStateMachine()
    rec = alive(m, max_restarts=3)
    m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=3.0))
    assert m.handle(sm.KillRequested("a1", no_restart=False, reason="", now=4.0)) == []
    assert (rec.state, rec.num_restarts) == (RESTARTING, 1)


def test_kill_of_a_dead_or_unknown_actor_is_ignored() -> None:
    m = sm.ActorStateMachine()
    rec = alive(m)
    m.handle(sm.KillRequested("a1", no_restart=True, reason="", now=3.0))
    m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=4.0))
    assert m.handle(sm.KillRequested("a1", no_restart=True, reason="again", now=5.0)) == []
    assert m.handle(sm.KillRequested("nope", no_restart=True, reason="", now=5.0)) == []
    assert rec.death.message == "killed by microray.kill()" and rec.end_time == 4.0


# -- nodes, owners, jobs ------------------------------------------------------------------------------
def test_node_died_restarts_or_ends_the_actors_on_it_only() -> None:
    m = sm.ActorStateMachine()
    restartable = alive(m, "a1", n=1, node="n1", max_restarts=1)
    mortal = alive(m, "a2", n=2, node="n1")
    elsewhere = alive(m, "a3", n=3, node="n2")
    out = m.handle(sm.NodeDied("n1", "no heartbeat for 10.0s", now=5.0))
    assert [type(i).__name__ for i in out] == [
        "StopWatching", "Persist", "Publish", "LeaseWorker", "KillWorker",
        "StopWatching", "Persist", "Publish", "KillWorker",
    ]
    assert out[4] == sm.KillWorker("a1", "10.0.0.1:7001") and out[8] == sm.KillWorker("a2", "10.0.0.1:7002")
    assert (restartable.state, restartable.num_restarts) == (RESTARTING, 1)
    assert mortal.state is DEAD and mortal.death == DeathCause(
        DeathKind.RESTARTS_EXHAUSTED,
        "the actor's node n1 died (no heartbeat for 10.0s) and max_restarts=0 restarts were used up")
    assert elsewhere.state is ALIVE
    # the streams of the dead node's workers end later: nothing more happens
    assert m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=6.0)) == []
    assert m.handle(sm.WorkerDied("a2", 0, sm.ExitReason.STREAM_ENDED, now=6.0)) == []


def test_owner_death_kills_its_non_detached_actors_only() -> None:
    """Fate sharing: the actors an actor created die when its process does (also when it
    restarts); detached ones live on."""
    m = sm.ActorStateMachine()
    parent = alive(m, "p", n=1, max_restarts=1)
    child = alive(m, "c", n=2, owner=parent.address, max_restarts=3)
    pending_child = new_record("pc", owner=parent.address)
    m.handle(sm.ActorRegistered(pending_child, now=1.0))
    detached = alive(m, "d", n=3, owner=parent.address, lifetime="detached")
    out = m.handle(sm.WorkerDied("p", 0, sm.ExitReason.STREAM_ENDED, now=5.0))
    cause = DeathCause(DeathKind.OWNER_DIED, "its owner, the actor p, died")
    assert sm.KillWorker("c", "10.0.0.1:7002") in out and sm.CancelLease("pc") in out
    assert child.killed and child.death == cause and child.state is ALIVE  # until its process is gone
    assert pending_child.state is DEAD and pending_child.death == cause
    assert detached.state is ALIVE and not detached.killed
    assert parent.state is RESTARTING
    m.handle(sm.WorkerDied("c", 0, sm.ExitReason.STREAM_ENDED, now=6.0))
    assert child.state is DEAD and child.death == cause and child.num_restarts == 0


def test_job_finished_kills_its_non_detached_actors() -> None:
    m = sm.ActorStateMachine()
    mine = alive(m, "a1", n=1)
    waiting = new_record("a2")
    m.handle(sm.ActorRegistered(waiting, now=1.0))
    detached = alive(m, "a3", n=3, lifetime="detached")
    other_job = alive(m, "a4", n=4, job_id="j2")
    out = m.handle(sm.JobFinished("j1", now=5.0))
    assert sm.KillWorker("a1", "10.0.0.1:7001") in out and sm.CancelLease("a2") in out
    assert mine.killed and mine.public()["death_cause"] == "its owner (the job's driver) exited"
    assert waiting.state is DEAD and waiting.death.kind is DeathKind.JOB_FINISHED
    assert detached.state is ALIVE and other_job.state is ALIVE and not other_job.killed


# -- GCS restart ----------------------------------------------------------------------------------
def run_and_persist(m: sm.ActorStateMachine, store: dict[str, bytes], event) -> list:
    """Apply ``event`` and carry out its Persist instructions into ``store``."""
    out = m.handle(event)
    for ins in out:
        if isinstance(ins, sm.Persist):
            store[ins.actor_id] = encode(m.records[ins.actor_id])
    return out


def test_recovery_after_a_gcs_restart() -> None:
    """Records written by one GCS, read by the next: ALIVE ones are re-attached (lookups wait
    until confirmed), creations under way are re-run, DEAD ones stay dead."""
    store: dict[str, bytes] = {}
    old = sm.ActorStateMachine()
    for aid in ("alive", "creating", "restarting", "dead"):
        run_and_persist(old, store, sm.ActorRegistered(new_record(aid, max_restarts=2), now=1.0))
    for n, aid in enumerate(("alive", "restarting", "dead", "creating"), start=1):
        run_and_persist(old, store, sm.WorkerLeased(aid, 0, worker(n)))
    for aid in ("alive", "restarting", "dead"):
        run_and_persist(old, store, sm.ConstructorDone(aid, 0, now=2.0))
    run_and_persist(old, store, sm.WorkerDied("restarting", 0, sm.ExitReason.STREAM_ENDED, now=3.0))
    run_and_persist(old, store, sm.KillRequested("dead", True, "", now=3.0))
    run_and_persist(old, store, sm.WorkerDied("dead", 0, sm.ExitReason.STREAM_ENDED, now=3.0))

    new = sm.ActorStateMachine()
    out = new.handle(sm.GcsRecovered(tuple(decode(raw) for raw in store.values())))
    by_actor: dict[str, list[str]] = {}
    for ins in out:
        aid = ins.actor["actor_id"] if isinstance(ins, sm.Publish) else ins.actor_id
        by_actor.setdefault(aid, []).append(type(ins).__name__)
    assert by_actor == {
        "alive": ["Watch"],
        "creating": ["Persist", "Publish", "LeaseWorker"],
        "restarting": ["Persist", "Publish", "LeaseWorker"],
    }
    assert sm.Watch("alive", 0, "10.0.0.1:7001", None) in out  # re-attach: no constructor
    assert next(i for i in out if isinstance(i, sm.LeaseWorker) and i.actor_id == "restarting").incarnation == 1
    assert new.records["creating"].address == ""  # the abandoned attempt's worker is not reused
    assert new.records["restarting"].state is RESTARTING
    assert new.records["dead"].state is DEAD and new.records["dead"].death.message == "killed by microray.kill()"
    assert new.reattaching == {"alive"}
    # the recovered ALIVE actor answers: lookups may go on; a second confirmation changes nothing
    assert new.handle(sm.WorkerReattached("alive", 0)) == [sm.ReleaseWaiters("alive")]
    assert new.handle(sm.WorkerReattached("alive", 0)) == []
    assert new.reattaching == set()


def test_recovered_alive_actor_whose_process_died_meanwhile_restarts_and_releases_lookups() -> None:
    m = sm.ActorStateMachine()
    rec = new_record(max_restarts=1)
    rec.state, rec.address, rec.pid, rec.node_id = ALIVE, "10.0.0.1:7001", 1001, "n1"
    m.handle(sm.GcsRecovered((rec,)))
    out = m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.UNREACHABLE, now=5.0))
    assert kinds(out) == ["Persist", "Publish", "ReleaseWaiters", "LeaseWorker"]
    assert m.reattaching == set() and rec.state is RESTARTING


def test_recovered_killed_actor_dies_with_the_recorded_cause() -> None:
    """kill(no_restart=True) was persisted, then the GCS went down before the process did."""
    m = sm.ActorStateMachine()
    rec = new_record(max_restarts=3)
    rec.state, rec.address, rec.killed = ALIVE, "10.0.0.1:7001", True
    rec.death = DeathCause(DeathKind.KILLED, "killed by microray.kill()")
    m.handle(sm.GcsRecovered((decode(encode(rec)),)))
    out = m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=5.0))
    assert kinds(out) == ["Persist", "Publish", "ReleaseWaiters"]
    assert m.records["a1"].state is DEAD and m.records["a1"].death.message == "killed by microray.kill()"


# -- events that do not apply -----------------------------------------------------------------------
def test_events_that_do_not_apply_change_nothing() -> None:
    m = sm.ActorStateMachine()
    rec = alive(m)
    snapshot = encode(rec)
    before = m.ignored
    assert m.handle(sm.ConstructorDone("a1", 0, now=9.0)) == []  # twice
    assert m.handle(sm.ConstructorFailed("a1", 0, b"e", now=9.0)) == []  # after success
    assert m.handle(sm.WorkerReattached("a1", 0)) == []  # not recovered
    assert m.handle(sm.ActorRegistered(new_record(), now=9.0)) == []  # registered twice
    assert m.handle(sm.WorkerDied("zz", 0, sm.ExitReason.STREAM_ENDED, now=9.0)) == []  # unknown actor
    # a second grant for an incarnation that has its worker: that worker is not wanted
    assert m.handle(sm.WorkerLeased("a1", 0, worker(9))) == [sm.KillWorker("a1", "10.0.0.1:7009")]
    assert m.ignored == before + 6
    assert encode(rec) == snapshot


def test_no_process_no_death_and_not_a_event_is_an_error() -> None:
    m = sm.ActorStateMachine()
    m.handle(sm.ActorRegistered(new_record(), now=1.0))
    assert m.handle(sm.WorkerDied("a1", 0, sm.ExitReason.STREAM_ENDED, now=2.0)) == []  # no worker yet
    assert m.records["a1"].state is PENDING
    with pytest.raises(TypeError, match="expected one of the events"):
        m.handle("created")  # type: ignore[arg-type]


# -- the record and its encoding --------------------------------------------------------------------
def test_record_round_trips_through_its_store_encoding() -> None:
    rec = new_record(name="n", namespace="ns", lifetime="detached", max_restarts=-1, max_task_retries=2,
                     strategy={"type": "node_affinity", "node_id": "x", "soft": False}, env_key='{"a": 1}',
                     methods={"f": {"num_returns": -1, "is_async": True}})
    rec.state, rec.num_restarts, rec.address, rec.pid, rec.killed = RESTARTING, 3, "h:1", 42, True
    rec.death, rec.creation_error = DeathCause(DeathKind.OWNER_DIED, "its owner died"), b"\x00err"
    rec.submit_time, rec.start_time, rec.end_time = 1.5, 2.5, 3.5
    assert decode(encode(rec)) == rec
    assert decode(encode(new_record())) == new_record()


def test_an_old_pickled_record_is_refused_with_a_clear_error() -> None:
    old = pickle.dumps({"actor_id": "a1", "state": "ALIVE"})
    with pytest.raises(ValueError, match="not an ActorTableData message"):
        decode(old)


def test_registration_is_checked() -> None:
    with pytest.raises(ValueError, match="non-empty string actor_id"):
        ActorRecord.from_registration({"class_name": "C"})
    with pytest.raises(ValueError, match="lifetime must be 'detached' or 'non_detached'"):
        ActorRecord.from_registration({"actor_id": "a", "lifetime": "forever"})


def test_public_view_keeps_the_names_callers_read() -> None:
    rec = new_record(lifetime="detached")
    view = rec.public()
    assert "creation_spec" not in view
    assert view["lifetime"] == "detached" and view["state"] == "PENDING_CREATION"
    assert view["pid"] is None and view["start_time"] is None and view["death_cause"] is None


def test_every_event_has_a_handler() -> None:
    from typing import get_args

    assert set(sm._HANDLERS) == set(get_args(sm.Event))
