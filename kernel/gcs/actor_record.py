"""The GCS's typed actor record, and its encoding in the GCS store.

An :class:`ActorRecord` is what the GCS knows about one actor: what its creator asked
for (fixed for the actor's life), where it is in its life (:class:`ActorState`), the
process that currently runs it, and — once it is dead or being killed — why
(:class:`DeathCause`). :mod:`microray.gcs.actor_state` changes records; the GCS store
keeps them as ``ActorTableData`` protobuf messages (``protocol/actor_table.proto``), never
as pickles. Callers outside the GCS see the :meth:`ActorRecord.public` dict.

This module does no I/O.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from microray.protocol.actor_table_pb2 import ActorTableData

__all__ = ["ActorRecord", "ActorState", "DeathCause", "DeathKind", "LeasedWorker", "decode", "encode"]


class ActorState(enum.Enum):
    """An actor's state, as Ray names them."""

    DEPENDENCIES_UNREADY = "DEPENDENCIES_UNREADY"
    PENDING_CREATION = "PENDING_CREATION"
    ALIVE = "ALIVE"
    RESTARTING = "RESTARTING"
    DEAD = "DEAD"


class DeathKind(enum.Enum):
    """Why an actor is (or is about to be) dead."""

    KILLED = "KILLED"  # microray.kill(), or a kill naming its reason (the handle went out of scope)
    RESTARTS_EXHAUSTED = "RESTARTS_EXHAUSTED"  # its process died and no restart was left
    CREATION_FAILED = "CREATION_FAILED"  # its constructor raised, or it can never be scheduled
    OWNER_DIED = "OWNER_DIED"  # the actor that created it died (fate sharing)
    JOB_FINISHED = "JOB_FINISHED"  # its job's driver exited


@dataclass(frozen=True)
class DeathCause:
    """Why an actor died: a kind to decide on and the sentence users read
    (``ActorDiedError`` messages and the state API's ``death_cause``)."""

    kind: DeathKind
    message: str


@dataclass(frozen=True)
class LeasedWorker:
    """The worker process a raylet leased for an actor."""

    address: str  # "ip:port" of its core worker
    pid: int
    node_id: str
    worker_id: str
    lease_id: str


@dataclass
class ActorRecord:
    """One actor, as the GCS keeps it. Mutated only by ``ActorStateMachine``."""

    actor_id: str
    class_name: str = ""
    name: str = ""
    namespace: str = ""
    detached: bool = False
    max_restarts: int = 0  # -1: no limit
    max_task_retries: int = 0
    job_id: str = ""
    owner: str = ""  # address of the process that created it
    resources: dict[str, float] = field(default_factory=dict)  # needed to schedule
    hold: dict[str, float] = field(default_factory=dict)  # held while it runs
    strategy: Any = "DEFAULT"  # as scheduling_strategies.to_wire: "DEFAULT", "SPREAD" or a dict
    env_key: str = ""
    methods: dict[str, Any] = field(default_factory=dict)
    creation_spec: bytes = b""
    state: ActorState = ActorState.PENDING_CREATION
    num_restarts: int = 0
    submit_time: float = 0.0
    start_time: float = 0.0
    end_time: float = 0.0
    address: str = ""  # "" while no process is leased
    pid: int = 0
    node_id: str = ""
    worker_id: str = ""
    lease_id: str = ""
    killed: bool = False
    death: DeathCause | None = None
    creation_error: bytes = b""

    @classmethod
    def from_registration(cls, fields: dict[str, Any]) -> "ActorRecord":
        """The record of a newly registered actor from the dict its creator sends
        (``microray.actor``); raise ``ValueError`` naming what is missing or wrong."""
        actor_id = fields.get("actor_id")
        if not isinstance(actor_id, str) or not actor_id:
            raise ValueError(f"an actor registration needs a non-empty string actor_id, got {actor_id!r}")
        lifetime = fields.get("lifetime") or "non_detached"
        if lifetime not in ("detached", "non_detached"):
            raise ValueError(f"actor {actor_id}: lifetime must be 'detached' or 'non_detached', got {lifetime!r}")
        return cls(
            actor_id=actor_id,
            class_name=fields.get("class_name") or "",
            name=fields.get("name") or "",
            namespace=fields.get("namespace") or "",
            detached=lifetime == "detached",
            max_restarts=int(fields.get("max_restarts") or 0),
            max_task_retries=int(fields.get("max_task_retries") or 0),
            job_id=fields.get("job_id") or "",
            owner=fields.get("owner") or "",
            resources={k: float(v) for k, v in (fields.get("resources") or {}).items()},
            hold={k: float(v) for k, v in (fields.get("hold") or {}).items()},
            strategy=fields.get("strategy") or "DEFAULT",
            env_key=fields.get("env_key") or "",
            methods=dict(fields.get("methods") or {}),
            creation_spec=fields.get("creation_spec") or b"",
        )

    def restarts_left(self) -> bool:
        return self.max_restarts == -1 or self.num_restarts < self.max_restarts

    def public(self) -> dict[str, Any]:
        """What callers see (``GetActor``, ``ListActors``, observer hooks): every field but
        the creation task, with Ray's names; unset times, pid and node are ``None``."""
        return {
            "actor_id": self.actor_id,
            "class_name": self.class_name,
            "name": self.name,
            "namespace": self.namespace,
            "lifetime": "detached" if self.detached else "non_detached",
            "max_restarts": self.max_restarts,
            "max_task_retries": self.max_task_retries,
            "job_id": self.job_id,
            "owner": self.owner,
            "resources": dict(self.resources),
            "hold": dict(self.hold),
            "strategy": self.strategy,
            "env_key": self.env_key,
            "methods": self.methods,
            "state": self.state.value,
            "num_restarts": self.num_restarts,
            "submit_time": self.submit_time or None,
            "start_time": self.start_time or None,
            "end_time": self.end_time or None,
            "address": self.address,
            "pid": self.pid or None,
            "node_id": self.node_id or None,
            "worker_id": self.worker_id,
            "lease_id": self.lease_id,
            "killed": self.killed,
            "death_cause": self.death.message if self.death is not None else None,
            "creation_error": self.creation_error or None,
        }


_STATE_TO_PB = {s: ActorTableData.State.Value(s.value) for s in ActorState}
_STATE_FROM_PB = {v: k for k, v in _STATE_TO_PB.items()}
_DEATH_TO_PB = {d: ActorTableData.DeathKind.Value(d.value) for d in DeathKind}
_DEATH_FROM_PB = {v: k for k, v in _DEATH_TO_PB.items()}


def encode(record: ActorRecord) -> bytes:
    """``record`` as the bytes the GCS store keeps (a serialized ``ActorTableData``)."""
    msg = ActorTableData(
        actor_id=record.actor_id, class_name=record.class_name, name=record.name,
        namespace=record.namespace, detached=record.detached, max_restarts=record.max_restarts,
        max_task_retries=record.max_task_retries, job_id=record.job_id, owner=record.owner,
        resources=record.resources, hold=record.hold, strategy_json=json.dumps(record.strategy),
        env_key=record.env_key, methods_json=json.dumps(record.methods), creation_spec=record.creation_spec,
        state=_STATE_TO_PB[record.state], num_restarts=record.num_restarts, submit_time=record.submit_time,
        start_time=record.start_time, end_time=record.end_time, address=record.address, pid=record.pid,
        node_id=record.node_id, worker_id=record.worker_id, lease_id=record.lease_id, killed=record.killed,
        creation_error=record.creation_error,
    )
    if record.death is not None:
        msg.death_kind = _DEATH_TO_PB[record.death.kind]
        msg.death_message = record.death.message
    return msg.SerializeToString()


def decode(raw: bytes) -> ActorRecord:
    """The record that :func:`encode` wrote; raise ``ValueError`` if ``raw`` is not one."""
    try:
        msg = ActorTableData.FromString(raw)
        state = _STATE_FROM_PB[msg.state]
        strategy = json.loads(msg.strategy_json) if msg.strategy_json else "DEFAULT"
        methods = json.loads(msg.methods_json) if msg.methods_json else {}
    except Exception as exc:  # noqa: BLE001 -- any decoding failure means the same thing
        raise ValueError(
            f"a GCS actor record ({len(raw)} bytes) is not an ActorTableData message of this schema: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    death = None
    if msg.death_kind:
        death = DeathCause(_DEATH_FROM_PB[msg.death_kind], msg.death_message)
    return ActorRecord(
        actor_id=msg.actor_id, class_name=msg.class_name, name=msg.name, namespace=msg.namespace,
        detached=msg.detached, max_restarts=msg.max_restarts, max_task_retries=msg.max_task_retries,
        job_id=msg.job_id, owner=msg.owner, resources=dict(msg.resources), hold=dict(msg.hold),
        strategy=strategy, env_key=msg.env_key, methods=methods, creation_spec=msg.creation_spec,
        state=state, num_restarts=msg.num_restarts, submit_time=msg.submit_time, start_time=msg.start_time,
        end_time=msg.end_time, address=msg.address, pid=msg.pid, node_id=msg.node_id,
        worker_id=msg.worker_id, lease_id=msg.lease_id, killed=msg.killed, death=death,
        creation_error=msg.creation_error,
    )
