"""Lease bookkeeping of one raylet (pure: events in, decisions out, no I/O).

The raylet feeds it lease requests, worker registrations and exits, returns,
blocked/unblocked notices and the deaths of lease owners; ``dispatch()`` answers
which pending requests can be granted to which idle worker now, and how many
workers of each runtime environment to start.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from microray.raylet import fair_share

EPS = 1e-9
DEAD_OWNERS_KEPT = 10_000  # ids of dead lease owners remembered, to refuse their late requests


@dataclass
class WorkerState:
    worker_id: str
    pid: int
    address: str = ""
    env_hash: str = ""
    state: str = "STARTING"   # STARTING | IDLE | LEASED | DEAD
    lease_id: str = ""
    owner: str = ""           # worker id of the lease's owner while LEASED
    held: dict[str, float] = field(default_factory=dict)
    blocked: bool = False
    is_actor: bool = False
    idle_since: float = 0.0
    gpus: dict[int, float] = field(default_factory=dict)  # GPU index -> share held
    owner_address: str = ""   # the owner's core-worker address while LEASED (to ask the lease back)
    granted_at: float = 0.0   # when the current lease was granted (monotonic)
    yield_asked: bool = False  # its owner was asked to return the lease (fair_share)


@dataclass
class PendingLease:
    lease_id: str
    resources: dict[str, float]
    env_hash: str = ""
    hold: dict[str, float] | None = None  # what the worker keeps while leased (actors: 0 CPU)
    is_actor: bool = False
    owner: str = ""
    owner_address: str = ""
    lease_key: str = ""
    created: float = field(default_factory=time.monotonic)
    token: Any = None                     # the raylet's handle to answer the caller


@dataclass(frozen=True)
class Grant:
    lease: PendingLease
    worker: WorkerState


class LeaseManager:
    def __init__(self, total: Mapping[str, float]) -> None:
        self.total = dict(total)
        self.available = dict(total)
        self.workers: dict[str, WorkerState] = {}
        self.by_lease: dict[str, str] = {}  # lease id -> worker id
        self.pending: deque[PendingLease] = deque()
        self.starting: dict[str, int] = {}   # env hash -> workers being started
        self.dead_owners: OrderedDict[str, None] = OrderedDict()
        self._ids = itertools.count(1)
        # the node's GPUs by index (0..GPU-1) and the share of each still free: a lease
        # that holds GPUs is given ids, which its worker exports as CUDA_VISIBLE_DEVICES
        self.gpu_free: list[float] = [1.0] * int(self.total.get("GPU", 0.0) + EPS)

    # -- resources -----------------------------------------------------------
    def feasible(self, demand: Mapping[str, float]) -> bool:
        return all(self.total.get(k, 0.0) + EPS >= v for k, v in demand.items() if v > 0)

    def fits(self, demand: Mapping[str, float]) -> bool:
        return all(self.available.get(k, 0.0) + EPS >= v for k, v in demand.items() if v > 0)

    def _take(self, demand: Mapping[str, float]) -> None:
        for k, v in demand.items():
            if v:
                self.available[k] = self.available.get(k, 0.0) - v

    def _give(self, demand: Mapping[str, float]) -> None:
        for k, v in demand.items():
            if v:
                self.available[k] = min(self.total.get(k, 0.0), self.available.get(k, 0.0) + v)

    # -- requests --------------------------------------------------------------
    def new_lease_id(self) -> str:
        return f"L{next(self._ids)}"

    def submit(self, lease: PendingLease) -> bool:
        """Queue a request; False (and not queued) when its owner is known to be dead."""
        if lease.owner and lease.owner in self.dead_owners:
            return False
        self.pending.append(lease)
        return True

    def cancel(self, predicate) -> list[PendingLease]:
        """Drop pending requests matching ``predicate``; return them."""
        dropped = [p for p in self.pending if predicate(p)]
        if dropped:
            self.pending = deque(p for p in self.pending if not predicate(p))
        return dropped

    def dispatch(self) -> tuple[list[Grant], dict[str, int]]:
        """Grant what can be granted now; say how many workers to start per env."""
        grants: list[Grant] = []
        want_workers: dict[str, int] = {}
        idle: dict[str, list[WorkerState]] = {}
        for w in self.workers.values():
            if w.state == "IDLE":
                idle.setdefault(w.env_hash, []).append(w)
        remaining: deque[PendingLease] = deque()
        # resources left once the leases waiting for a new worker are served: a worker is
        # only started for a lease that could be granted when it arrives
        spare = dict(self.available)
        for lease in self._in_grant_order():
            if not self.fits(lease.resources):
                remaining.append(lease)
                continue
            pool = idle.get(lease.env_hash)
            if pool:
                worker = pool.pop()
                self._grant(lease, worker)
                grants.append(Grant(lease, worker))
                spare = _minus(spare, lease.resources if lease.hold is None else lease.hold)
            else:
                if _fits(spare, lease.resources):
                    want_workers[lease.env_hash] = want_workers.get(lease.env_hash, 0) + 1
                    spare = _minus(spare, lease.resources)
                remaining.append(lease)
        self.pending = remaining
        to_start = {}
        for env, wanted in want_workers.items():
            missing = wanted - self.starting.get(env, 0)
            if missing > 0:
                to_start[env] = missing
                self.starting[env] = self.starting.get(env, 0) + missing
        return grants, to_start

    def _in_grant_order(self) -> Sequence[PendingLease]:
        """The pending requests, the least-served owner's first (``fair_share``); not to
        be changed by the caller (with one owner it is ``pending`` itself: a request
        comes, goes or is granted on every lease call, so this is on the lease path)."""
        pending = self.pending
        if len(pending) > 1:
            first = pending[0].owner
            for p in pending:
                if p.owner != first:
                    shares = fair_share.owner_shares(self.workers.values(), self.total)
                    return fair_share.grant_order(list(pending), shares, self.total)
        return pending

    def leases_to_yield(self, now: float, min_hold_s: float) -> tuple[list[WorkerState], float | None]:
        """Leases whose owners should return them, so that the requests pending here get
        their turn (``fair_share.leases_to_yield``); each is marked ``yield_asked``. Also
        in how many seconds to ask again, when a lease was passed over for its youth."""
        if not self.pending:
            return [], None
        order = self._in_grant_order()
        asks, recheck = fair_share.leases_to_yield(order, self.workers.values(), self.available, self.total,
                                                   now, min_hold_s)
        for w in asks:
            w.yield_asked = True
        return asks, recheck

    def _grant(self, lease: PendingLease, worker: WorkerState) -> None:
        hold = lease.resources if lease.hold is None else lease.hold
        self._take(hold)
        worker.state = "LEASED"
        worker.lease_id = lease.lease_id
        worker.owner = lease.owner
        worker.owner_address = lease.owner_address
        worker.granted_at = time.monotonic()
        worker.yield_asked = False
        worker.held = dict(hold)
        worker.is_actor = lease.is_actor
        worker.gpus = self._take_gpus(hold.get("GPU", 0.0))
        self.by_lease[lease.lease_id] = worker.worker_id

    def _take_gpus(self, amount: float) -> dict[int, float]:
        """GPU ids for a lease holding ``amount`` GPUs: a fraction shares one GPU (the
        fullest one it fits on), a whole number takes that many of the freest GPUs."""
        free = self.gpu_free
        if amount <= EPS or not free:
            return {}
        if amount < 1.0:
            fitting = [i for i, share in enumerate(free) if share + EPS >= amount]
            index = min(fitting, key=lambda i: free[i]) if fitting else max(range(len(free)), key=free.__getitem__)
            free[index] -= amount
            return {index: amount}
        count = min(len(free), int(amount + 1.0 - EPS))
        chosen = sorted(sorted(range(len(free)), key=lambda i: -free[i])[:count])
        for i in chosen:
            free[i] -= 1.0
        return {i: 1.0 for i in chosen}

    def _give_gpus(self, worker: WorkerState) -> None:
        for index, share in worker.gpus.items():
            self.gpu_free[index] = min(1.0, self.gpu_free[index] + share)
        worker.gpus = {}

    # -- workers ---------------------------------------------------------------
    def worker_started(self, worker_id: str, pid: int, env_hash: str) -> None:
        self.workers[worker_id] = WorkerState(worker_id, pid, env_hash=env_hash)

    def worker_registered(self, worker_id: str, address: str) -> WorkerState | None:
        w = self.workers.get(worker_id)
        if w is None:
            return None
        if w.state == "STARTING":
            self.starting[w.env_hash] = max(0, self.starting.get(w.env_hash, 0) - 1)
        w.address = address
        w.state = "IDLE"
        w.idle_since = time.monotonic()
        return w

    def worker_exited(self, worker_id: str) -> WorkerState | None:
        w = self.workers.pop(worker_id, None)
        if w is None:
            return None
        if w.state == "STARTING":
            self.starting[w.env_hash] = max(0, self.starting.get(w.env_hash, 0) - 1)
        if w.state == "LEASED":
            self.by_lease.pop(w.lease_id, None)
            self._give(_holding(w))
            self._give_gpus(w)
        w.state = "DEAD"
        return w

    def worker_by_pid(self, pid: int) -> WorkerState | None:
        for w in self.workers.values():
            if w.pid == pid:
                return w
        return None

    def release(self, lease_id: str) -> WorkerState | None:
        """The lease holder returned the worker."""
        worker_id = self.by_lease.pop(lease_id, None)
        w = self.workers.get(worker_id) if worker_id else None
        if w is None:
            return None
        self._give(_holding(w))
        self._give_gpus(w)
        w.held = {}
        w.blocked = False
        w.lease_id = ""
        w.owner = ""
        w.owner_address = ""
        w.yield_asked = False
        w.is_actor = False
        w.state = "IDLE"
        w.idle_since = time.monotonic()
        return w

    def owner_died(self, owner: str) -> tuple[list[PendingLease], list[WorkerState]]:
        """The process ``owner`` (a worker id) is gone. Its waiting requests are dropped
        and returned (answer them), later requests of it are refused by ``submit``, and
        the workers leased to it are returned: each must be released (when idle) or
        killed and reported by ``worker_exited`` (when it still runs the owner's task)."""
        if not owner:
            return [], []
        self.dead_owners[owner] = None
        if len(self.dead_owners) > DEAD_OWNERS_KEPT:
            self.dead_owners.popitem(last=False)
        dropped = self.cancel(lambda p: p.owner == owner)
        held = [w for w in self.workers.values() if w.state == "LEASED" and w.owner == owner]
        return dropped, held

    def set_blocked(self, worker_id: str, blocked: bool) -> bool:
        """A leased worker blocked in get() lends its CPU back until it unblocks."""
        w = self.workers.get(worker_id)
        if w is None or w.state != "LEASED" or w.blocked == blocked:
            return False
        cpu = {k: v for k, v in w.held.items() if k == "CPU"}
        if blocked:
            self._give(cpu)
        else:
            self._take(cpu)  # may oversubscribe briefly, as Ray does
        w.blocked = blocked
        return True

    def idle_workers(self, env_hash: str | None = None) -> list[WorkerState]:
        return [w for w in self.workers.values() if w.state == "IDLE" and (env_hash is None or w.env_hash == env_hash)]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.workers.values():
            out[w.state] = out.get(w.state, 0) + 1
        return out


def _holding(worker: WorkerState) -> dict[str, float]:
    """What a leased worker takes from the node now: what it holds, except the CPU it
    lent back while blocked in ``get()``."""
    if not worker.blocked:
        return worker.held
    return {k: v for k, v in worker.held.items() if k != "CPU"}


def _fits(available: Mapping[str, float], demand: Mapping[str, float]) -> bool:
    return all(available.get(k, 0.0) + EPS >= v for k, v in demand.items() if v > 0)


def _minus(available: Mapping[str, float], demand: Mapping[str, float]) -> dict[str, float]:
    out = dict(available)
    for k, v in demand.items():
        if v:
            out[k] = out.get(k, 0.0) - v
    return out
