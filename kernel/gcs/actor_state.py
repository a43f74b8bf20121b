"""The actor lifecycle as a pure state machine: events in, instructions out.

:class:`ActorStateMachine` holds every :class:`~microray.gcs.actor_record.ActorRecord` the
GCS knows. ``handle(event)`` changes records and returns the :data:`Instruction` list the
shell (``microray.gcs.actor_manager``) must carry out, in order: lease a worker, open the
actor's stream (sending the constructor), persist a record, publish a state change, kill a
worker, ... The shell reports what happened as new events. Nothing here does I/O, awaits,
or reads a clock (events carry ``now``), so every transition is unit-tested directly
(``tests/unit/test_actor_state.py``).

States and transitions (``docs/actors.md``, "The lifecycle, as the GCS runs it")::

    registered -> PENDING_CREATION --leased--> (constructor runs) --done--> ALIVE
    ALIVE / creating --worker or node died--> RESTARTING (restarts left, not killed)
                                          --> DEAD       (killed, or no restart left)
    creating --constructor raised--> DEAD (never restarted)
    waiting for a worker --lease refused for good--> DEAD (never restarted)
    RESTARTING --leased--> (constructor runs) --done--> ALIVE
    any but DEAD --kill(no_restart)--> DEAD (ALIVE: once its process is gone)

Each process an actor gets is one *incarnation*, numbered by ``num_restarts``. Events
about a process carry the incarnation they concern; an event about another incarnation,
an unknown actor, or one that does not apply in the actor's state (a lease granted to a
DEAD actor, a constructor finishing twice) is *stale*: it changes nothing, and the only
instruction it may yield is to kill a worker nobody wants any more. ``handle`` never
raises for a stale event; the shell logs it at debug level (``ignored`` counts them).

The machine never picks a node: :class:`LeaseWorker` carries the scheduling request, and
the shell (with the raylets and their scheduling policies) decides where the worker runs,
so a restart may land on another node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from microray.gcs.actor_record import ActorRecord, ActorState, DeathCause, DeathKind, LeasedWorker
from microray.interfaces.scheduling import SchedulingRequest

__all__ = [
    "ActorRegistered", "ActorStateMachine", "CancelLease", "ConstructorDone", "ConstructorFailed",
    "Event", "ExitReason", "GcsRecovered", "Instruction", "JobFinished", "KillRequested", "KillWorker",
    "LeaseRefused", "LeaseWorker", "NodeDied", "Persist", "Publish", "ReleaseWaiters", "StopWatching",
    "Watch", "WorkerDied", "WorkerLeased", "WorkerReattached",
]

KILLED_BY_USER = "killed by microray.kill()"
JOB_OWNER_EXITED = "its owner (the job's driver) exited"
CONSTRUCTOR_RAISED = "the actor's constructor raised an error"

# States in which the actor is being (re)created: waiting for a lease or running its constructor.
CREATING = (ActorState.DEPENDENCIES_UNREADY, ActorState.PENDING_CREATION, ActorState.RESTARTING)


class ExitReason:
    """How the shell learned that an actor's process is gone (``WorkerDied.reason``)."""

    STREAM_ENDED = "stream_ended"  # its stream from the GCS ended or broke
    UNREACHABLE = "unreachable"  # no connection could be made to it
    NODE_DIED = "node_died"  # the GCS declared its node dead


# -- events ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ActorRegistered:
    """A creator registered a new actor (its name is already reserved)."""

    record: ActorRecord
    now: float


@dataclass(frozen=True)
class WorkerLeased:
    """A raylet granted the worker asked for by ``LeaseWorker(actor_id, incarnation)``."""

    actor_id: str
    incarnation: int
    worker: LeasedWorker


@dataclass(frozen=True)
class LeaseRefused:
    """A raylet refused the lease asked for by ``LeaseWorker(actor_id, incarnation)`` for
    good: no node can ever run the actor (a hard node affinity to a node that is not
    alive). ``reason`` says why, for the actor's death cause."""

    actor_id: str
    incarnation: int
    reason: str
    now: float


@dataclass(frozen=True)
class ConstructorDone:
    actor_id: str
    incarnation: int
    now: float


@dataclass(frozen=True)
class ConstructorFailed:
    actor_id: str
    incarnation: int
    error: bytes  # the serialized exception
    now: float


@dataclass(frozen=True)
class WorkerReattached:
    """After a GCS restart, the process of an actor recovered as ALIVE answered."""

    actor_id: str
    incarnation: int


@dataclass(frozen=True)
class WorkerDied:
    """The actor's process (of this incarnation) is gone, or cannot be reached."""

    actor_id: str
    incarnation: int
    reason: str  # an ExitReason
    now: float


@dataclass(frozen=True)
class NodeDied:
    """The GCS declared a node dead: every actor process on it is gone."""

    node_id: str
    reason: str
    now: float


@dataclass(frozen=True)
class KillRequested:
    """``microray.kill()`` (``no_restart`` as given; ``reason`` "" for the default)."""

    actor_id: str
    no_restart: bool
    reason: str
    now: float


@dataclass(frozen=True)
class JobFinished:
    """A job's driver exited: its non-detached actors die."""

    job_id: str
    now: float


@dataclass(frozen=True)
class GcsRecovered:
    """A (re)started GCS read these records from its store."""

    records: tuple[ActorRecord, ...]


Event = Union[ActorRegistered, WorkerLeased, LeaseRefused, ConstructorDone, ConstructorFailed, WorkerReattached,
              WorkerDied, NodeDied, KillRequested, JobFinished, GcsRecovered]


# -- instructions -------------------------------------------------------------------------
@dataclass(frozen=True)
class LeaseWorker:
    """Lease a worker for ``incarnation``; report ``WorkerLeased`` when granted (retry until
    then). ``request`` (resources to schedule, strategy) is what a scheduling policy reads to
    pick the node; the worker then holds ``hold`` and runs with runtime env ``env_key``."""

    actor_id: str
    incarnation: int
    request: SchedulingRequest
    hold: dict[str, float]
    env_key: str

    @property
    def lease_key(self) -> str:
        return f"actor:{self.actor_id}"


@dataclass(frozen=True)
class CancelLease:
    """Stop asking for the worker of a ``LeaseWorker`` still outstanding (if any)."""

    actor_id: str


@dataclass(frozen=True)
class Watch:
    """Open the actor's stream to ``address`` and keep it open, reporting what comes back
    (``ConstructorDone``/``ConstructorFailed``, ``WorkerReattached``, ``WorkerDied``).
    With ``creation_spec`` send it (create the actor); without, check that the process
    answers (re-attach after a GCS restart)."""

    actor_id: str
    incarnation: int
    address: str
    creation_spec: bytes | None


@dataclass(frozen=True)
class StopWatching:
    """Close the actor's stream, if open, and report nothing more from it."""

    actor_id: str


@dataclass(frozen=True)
class KillWorker:
    """End the process at ``address`` (best effort: it may be gone already)."""

    actor_id: str
    address: str


@dataclass(frozen=True)
class Persist:
    """Write the actor's current record to the GCS store."""

    actor_id: str


@dataclass(frozen=True)
class Publish:
    """Tell observers (and waiters on the name) about a state change: ``actor`` is the
    public record at the change."""

    actor: dict[str, Any]


@dataclass(frozen=True)
class ReleaseWaiters:
    """Lookups held back until a recovered ALIVE record was confirmed may answer now."""

    actor_id: str


Instruction = Union[LeaseWorker, CancelLease, Watch, StopWatching, KillWorker, Persist, Publish, ReleaseWaiters]


# -- the machine ----------------------------------------------------------------------------
@dataclass
class ActorStateMachine:
    """Every actor the GCS knows, and the rules by which they change."""

    records: dict[str, ActorRecord] = field(default_factory=dict)
    # recovered as ALIVE, process not confirmed yet: lookups wait (ReleaseWaiters ends that)
    reattaching: set[str] = field(default_factory=set)
    ignored: int = 0  # stale events seen
    _published: dict[str, tuple[ActorState, int]] = field(default_factory=dict)

    def handle(self, event: Event) -> list[Instruction]:
        """Apply ``event``; return what the shell must do, in order."""
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise TypeError(f"ActorStateMachine.handle got {event!r}; expected one of the events of {__name__}")
        out: list[Instruction] = handler(self, event)
        return out

    # -- events ---------------------------------------------------------------------------
    def _on_ActorRegistered(self, ev: ActorRegistered) -> list[Instruction]:
        rec = ev.record
        if rec.actor_id in self.records:
            return self._stale()
        rec.state = ActorState.PENDING_CREATION
        rec.num_restarts = 0
        rec.submit_time = ev.now
        self.records[rec.actor_id] = rec
        return [Persist(rec.actor_id), *self._publish(rec), self._lease(rec)]

    def _on_WorkerLeased(self, ev: WorkerLeased) -> list[Instruction]:
        rec = self.records.get(ev.actor_id)
        if rec is None or rec.num_restarts != ev.incarnation or rec.state not in CREATING or rec.address:
            # nobody waits for this worker any more (killed meanwhile): do not leave it idle
            return [*self._stale(), KillWorker(ev.actor_id, ev.worker.address)]
        w = ev.worker
        rec.address, rec.pid, rec.node_id, rec.worker_id, rec.lease_id = (
            w.address, w.pid, w.node_id, w.worker_id, w.lease_id)
        return [Watch(rec.actor_id, rec.num_restarts, rec.address, rec.creation_spec)]

    def _on_LeaseRefused(self, ev: LeaseRefused) -> list[Instruction]:
        rec = self.records.get(ev.actor_id)
        if rec is None or rec.num_restarts != ev.incarnation or rec.state not in CREATING or rec.address:
            return self._stale()
        return self._die(rec, DeathCause(DeathKind.CREATION_FAILED, f"the actor cannot be scheduled: {ev.reason}"),
                         ev.now)

    def _on_ConstructorDone(self, ev: ConstructorDone) -> list[Instruction]:
        rec = self._creating(ev.actor_id, ev.incarnation)
        if rec is None:
            return self._stale()
        rec.state = ActorState.ALIVE
        rec.start_time = rec.start_time or ev.now
        return [Persist(rec.actor_id), *self._publish(rec)]

    def _on_ConstructorFailed(self, ev: ConstructorFailed) -> list[Instruction]:
        rec = self._creating(ev.actor_id, ev.incarnation)
        if rec is None:
            return self._stale()
        address = rec.address
        rec.creation_error = ev.error
        out = self._kill_owned(rec, ev.now)
        out += self._die(rec, DeathCause(DeathKind.CREATION_FAILED, CONSTRUCTOR_RAISED), ev.now)
        out += [StopWatching(rec.actor_id), KillWorker(rec.actor_id, address)]
        return out

    def _on_WorkerReattached(self, ev: WorkerReattached) -> list[Instruction]:
        rec = self.records.get(ev.actor_id)
        if rec is None or rec.num_restarts != ev.incarnation or ev.actor_id not in self.reattaching:
            return self._stale()
        return self._release(rec)

    def _on_WorkerDied(self, ev: WorkerDied) -> list[Instruction]:
        rec = self.records.get(ev.actor_id)
        if rec is None or rec.num_restarts != ev.incarnation or not rec.address or rec.state is ActorState.DEAD:
            return self._stale()
        return self._process_gone(rec, ev.reason, ev.now)

    def _on_NodeDied(self, ev: NodeDied) -> list[Instruction]:
        out: list[Instruction] = []
        for rec in list(self.records.values()):
            if rec.node_id == ev.node_id and rec.address and rec.state is not ActorState.DEAD:
                address = rec.address
                out.append(StopWatching(rec.actor_id))
                out += self._process_gone(rec, ExitReason.NODE_DIED, ev.now, node_reason=ev.reason)
                # in case the node is not dead after all: no second live instance
                out.append(KillWorker(rec.actor_id, address))
        return out

    def _on_KillRequested(self, ev: KillRequested) -> list[Instruction]:
        rec = self.records.get(ev.actor_id)
        if rec is None or rec.state is ActorState.DEAD:
            return self._stale()
        return self._kill(rec, ev.no_restart, DeathCause(DeathKind.KILLED, ev.reason or KILLED_BY_USER), ev.now)

    def _on_JobFinished(self, ev: JobFinished) -> list[Instruction]:
        out: list[Instruction] = []
        for rec in list(self.records.values()):
            if rec.job_id == ev.job_id and not rec.detached and rec.state is not ActorState.DEAD:
                out += self._kill(rec, True, DeathCause(DeathKind.JOB_FINISHED, JOB_OWNER_EXITED), ev.now)
        return out

    def _on_GcsRecovered(self, ev: GcsRecovered) -> list[Instruction]:
        out: list[Instruction] = []
        for rec in ev.records:
            if rec.actor_id in self.records:
                out += self._stale()
                continue
            self.records[rec.actor_id] = rec
            if rec.state is ActorState.DEAD:
                self._published[rec.actor_id] = (rec.state, rec.num_restarts)
            elif rec.state is ActorState.ALIVE:
                self._published[rec.actor_id] = (rec.state, rec.num_restarts)
                self.reattaching.add(rec.actor_id)
                out.append(Watch(rec.actor_id, rec.num_restarts, rec.address, None))
            else:
                # the creation was under way: run it again on a new worker (an address recorded
                # before the restart belongs to an abandoned attempt)
                if rec.state is not ActorState.RESTARTING:
                    rec.state = ActorState.PENDING_CREATION
                rec.address = ""
                out += [Persist(rec.actor_id), *self._publish(rec), self._lease(rec)]
        return out

    # -- transitions shared by several events ---------------------------------------------------
    def _process_gone(self, rec: ActorRecord, reason: str, now: float, node_reason: str = "") -> list[Instruction]:
        """The process of the current incarnation is gone: restart, or DEAD."""
        out = self._kill_owned(rec, now)
        if rec.killed:
            assert rec.death is not None
            return out + self._die(rec, rec.death, now)
        if rec.restarts_left():
            rec.num_restarts += 1
            rec.state = ActorState.RESTARTING
            rec.address = ""
            out += [Persist(rec.actor_id), *self._publish(rec), *self._release(rec), self._lease(rec)]
            return out
        if reason == ExitReason.NODE_DIED:
            what = f"the actor's node {rec.node_id} died ({node_reason})" if node_reason else \
                f"the actor's node {rec.node_id} died"
        else:
            what = f"the actor's worker process (pid {rec.pid}) died unexpectedly"
        cause = DeathCause(DeathKind.RESTARTS_EXHAUSTED,
                           f"{what} and max_restarts={rec.max_restarts} restarts were used up")
        return out + self._die(rec, cause, now)

    def _kill(self, rec: ActorRecord, no_restart: bool, cause: DeathCause, now: float) -> list[Instruction]:
        out: list[Instruction] = []
        if no_restart:
            rec.killed = True
            rec.death = cause
            out.append(Persist(rec.actor_id))  # before the process goes: its callers read the cause
        if rec.state is ActorState.ALIVE:
            if rec.address:
                out.append(KillWorker(rec.actor_id, rec.address))  # its stream's end reports the death
        elif no_restart:
            address = rec.address
            out += [CancelLease(rec.actor_id), StopWatching(rec.actor_id)]
            if address:  # a worker may already be leased and running the constructor
                out.append(KillWorker(rec.actor_id, address))
            out += self._kill_owned(rec, now)
            out += self._die(rec, cause, now)
        return out

    def _kill_owned(self, rec: ActorRecord, now: float) -> list[Instruction]:
        """Fate sharing, as in Ray: the non-detached actors an actor created die with the
        process that created them (called when that process is gone)."""
        if not rec.address:
            return []
        out: list[Instruction] = []
        cause = DeathCause(DeathKind.OWNER_DIED, f"its owner, the actor {rec.actor_id}, died")
        for other in list(self.records.values()):
            if (other is not rec and other.owner == rec.address and other.state is not ActorState.DEAD
                    and not other.detached):
                out += self._kill(other, True, cause, now)
        return out

    def _die(self, rec: ActorRecord, cause: DeathCause, now: float) -> list[Instruction]:
        rec.state = ActorState.DEAD
        rec.death = cause
        rec.address = ""
        rec.end_time = now
        return [Persist(rec.actor_id), *self._publish(rec), *self._release(rec)]

    # -- helpers -----------------------------------------------------------------------------
    def _creating(self, actor_id: str, incarnation: int) -> ActorRecord | None:
        rec = self.records.get(actor_id)
        if rec is None or rec.num_restarts != incarnation or rec.state not in CREATING or not rec.address:
            return None
        return rec

    def _lease(self, rec: ActorRecord) -> LeaseWorker:
        request = SchedulingRequest(dict(rec.resources), rec.strategy, rec.class_name)
        return LeaseWorker(rec.actor_id, rec.num_restarts, request, dict(rec.hold), rec.env_key)

    def _publish(self, rec: ActorRecord) -> list[Instruction]:
        """Observers hear of state changes (state, num_restarts), not of every write."""
        seen = (rec.state, rec.num_restarts)
        if self._published.get(rec.actor_id) == seen:
            return []
        self._published[rec.actor_id] = seen
        return [Publish(rec.public())]

    def _release(self, rec: ActorRecord) -> list[Instruction]:
        if rec.actor_id not in self.reattaching:
            return []
        self.reattaching.discard(rec.actor_id)
        return [ReleaseWaiters(rec.actor_id)]

    def _stale(self) -> list[Instruction]:
        self.ignored += 1
        return []


_HANDLERS: dict[type, Any] = {
    ActorRegistered: ActorStateMachine._on_ActorRegistered,
    WorkerLeased: ActorStateMachine._on_WorkerLeased,
    LeaseRefused: ActorStateMachine._on_LeaseRefused,
    ConstructorDone: ActorStateMachine._on_ConstructorDone,
    ConstructorFailed: ActorStateMachine._on_ConstructorFailed,
    WorkerReattached: ActorStateMachine._on_WorkerReattached,
    WorkerDied: ActorStateMachine._on_WorkerDied,
    NodeDied: ActorStateMachine._on_NodeDied,
    KillRequested: ActorStateMachine._on_KillRequested,
    JobFinished: ActorStateMachine._on_JobFinished,
    GcsRecovered: ActorStateMachine._on_GcsRecovered,
}
