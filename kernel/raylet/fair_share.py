"""Sharing one node's workers between lease owners (pure: no I/O, no clock).

An owner (a driver, or a worker whose task submits tasks) keeps a lease for the next
task of its kind, so one busy owner would hold every worker of a node for as long as it
has work, and the requests of every other owner would wait behind it. Two rules keep
the node shared while its CPUs turn over:

* **Grant order** (``grant_order``): when workers free up, the waiting requests of the
  owner that holds the least of the node go first (its *share*: the largest fraction of
  any one resource it holds, as in dominant resource fairness); an owner's own requests
  keep their order.
* **Asking leases back** (``leases_to_yield``): a request that cannot be granted, with
  no lease coming back that would make room, asks owners that hold more of the node
  than its own owner to return a lease once the task it runs is done. The owner that
  holds the most goes first, and of its leases the oldest. A lease is asked only once it
  has been held ``min_hold_s``, so that owners taking turns on a full node each run for
  a while between turns.

An owner never yields to its own requests, and an owner asked to return a lease still
asks for one again if it has work: it then waits in the grant order like everyone else.
Workers that hold an actor are never asked (an actor keeps its worker for its life),
nor are workers blocked in ``get()`` (they have lent their CPU back already).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

EPS = 1e-9
LEASED = "LEASED"


class Request(Protocol):
    """A lease request waiting at the raylet (``leases.PendingLease``)."""

    owner: str
    resources: dict[str, float]


class HeldWorker(Protocol):
    """A worker of the node (``leases.WorkerState``)."""

    state: str
    owner: str
    owner_address: str
    is_actor: bool
    blocked: bool
    held: dict[str, float]
    granted_at: float
    yield_asked: bool


R = TypeVar("R", bound=Request)
W = TypeVar("W", bound=HeldWorker)


def share(amounts: Mapping[str, float], total: Mapping[str, float]) -> float:
    """The largest fraction of one resource of the node that ``amounts`` takes."""
    best = 0.0
    for k, v in amounts.items():
        cap = total.get(k, 0.0)
        if v > 0 and cap > 0:
            best = max(best, v / cap)
    return best


def holding(worker: HeldWorker) -> dict[str, float]:
    """What a leased worker takes from the node now (not the CPU it lent back while
    blocked in ``get()``)."""
    if not worker.blocked:
        return worker.held
    return {k: v for k, v in worker.held.items() if k != "CPU"}


def _holds_some(worker: HeldWorker) -> bool:
    """Whether a leased worker takes anything from the node now (``holding``)."""
    blocked = worker.blocked
    for k, v in worker.held.items():
        if v > EPS and not (blocked and k == "CPU"):
            return True
    return False


def _counts(worker: HeldWorker) -> bool:
    return worker.state == LEASED and not worker.is_actor and bool(worker.owner)


def owner_shares(workers: Iterable[HeldWorker], total: Mapping[str, float]) -> dict[str, float]:
    """Each owner's share of the node: the leases it holds (actors' workers aside)."""
    shares: dict[str, float] = {}
    for w in workers:
        if _counts(w):
            shares[w.owner] = shares.get(w.owner, 0.0) + share(holding(w), total)
    return shares


def grant_order(pending: Sequence[R], shares: Mapping[str, float], total: Mapping[str, float]) -> list[R]:
    """``pending`` in the order to grant it: each next request is the oldest one of the
    owner whose share (counting the requests placed before it) is the smallest; ties go
    to the owner whose oldest request came first. One owner: ``pending`` as it is."""
    if len(pending) < 2:
        return list(pending)
    first = pending[0].owner
    if all(p.owner == first for p in pending):
        return list(pending)
    queues: dict[str, list[R]] = {}
    for p in pending:
        queues.setdefault(p.owner, []).append(p)
    arrival = {owner: i for i, owner in enumerate(queues)}
    projected = {owner: shares.get(owner, 0.0) for owner in queues}
    heads = dict.fromkeys(queues, 0)
    out: list[R] = []
    while len(out) < len(pending):
        owner = min((o for o in queues if heads[o] < len(queues[o])), key=lambda o: (projected[o], arrival[o]))
        p = queues[owner][heads[owner]]
        heads[owner] += 1
        projected[owner] += share(p.resources, total)
        out.append(p)
    return out


def _fits(available: Mapping[str, float], demand: Mapping[str, float]) -> bool:
    return all(available.get(k, 0.0) + EPS >= v for k, v in demand.items() if v > 0)


def _add(into: dict[str, float], amounts: Mapping[str, float], sign: float = 1.0) -> None:
    for k, v in amounts.items():
        if v:
            into[k] = into.get(k, 0.0) + sign * v


def _helps(hold: Mapping[str, float], demand: Mapping[str, float], free: Mapping[str, float]) -> bool:
    """Whether returning ``hold`` frees some resource ``demand`` lacks in ``free``."""
    return any(hold.get(k, 0.0) > EPS and free.get(k, 0.0) + EPS < v for k, v in demand.items() if v > 0)


def leases_to_yield(
    pending: Sequence[Request],
    workers: Iterable[W],
    available: Mapping[str, float],
    total: Mapping[str, float],
    now: float,
    min_hold_s: float,
) -> tuple[list[W], float | None]:
    """The leases to ask back so that the requests in ``pending`` (in grant order) are
    served fairly, and, when a lease was passed over only because it is younger than
    ``min_hold_s``, in how many seconds to ask again (else None).

    Leases already asked (``yield_asked``) count as coming back. A request that fits in
    what is free (or coming back) takes its part of it; one that does not takes leases
    of other owners, one at a time, while the owner giving one would still hold at least
    as much as the request's owner holds: the most-served owner's oldest lease first.
    When even that cannot make room for a request, nothing is asked for it."""
    workers = list(workers)
    # only a lease that holds something, of an owner other than the asker, is ever asked:
    # with none (one owner's requests, the common case), nothing is (checked after every
    # dispatch that leaves requests pending, so this is on the lease path: plain loops)
    owners = {p.owner for p in pending}
    only = next(iter(owners)) if len(owners) == 1 else None
    candidates = []
    for w in workers:
        if (w.state == LEASED and w.owner and w.owner != only and not w.is_actor and not w.yield_asked
                and w.owner_address and _holds_some(w)):
            candidates.append(w)
    if not candidates:
        return [], None
    free = dict(available)
    for w in workers:
        if w.state == LEASED and w.yield_asked:
            _add(free, holding(w))
    shares = owner_shares((w for w in workers if not w.yield_asked), total)
    taken: set[int] = set()
    asks: list[W] = []
    recheck: float | None = None
    for p in pending:
        if _fits(free, p.resources):
            _add(free, p.resources, -1.0)
            shares[p.owner] = shares.get(p.owner, 0.0) + share(p.resources, total)
            continue
        f = dict(free)
        sh = dict(shares)
        mine = sh.get(p.owner, 0.0)
        chosen: list[W] = []
        while not _fits(f, p.resources):
            best: W | None = None
            best_key: tuple[float, float] = (0.0, 0.0)
            for w in candidates:
                if id(w) in taken or w.owner == p.owner:
                    continue
                hold = holding(w)
                if not _helps(hold, p.resources, f):
                    continue
                if sh[w.owner] - share(hold, total) + EPS < mine:
                    continue  # it would leave that owner with less than the asker
                age = now - w.granted_at
                if age < min_hold_s:
                    wait = min_hold_s - age
                    recheck = wait if recheck is None else min(recheck, wait)
                    continue
                key = (sh[w.owner], age)
                if best is None or key > best_key:
                    best, best_key = w, key
            if best is None:
                break
            chosen.append(best)
            taken.add(id(best))
            _add(f, holding(best))
            sh[best.owner] -= share(holding(best), total)
        if not _fits(f, p.resources):
            for w in chosen:
                taken.discard(id(w))
            continue
        asks.extend(chosen)
        _add(f, p.resources, -1.0)
        sh[p.owner] = mine + share(p.resources, total)
        free, shares = f, sh
    return asks, recheck
