"""The submitter's lease decisions, pure: when to ask a raylet for a worker lease, which
queued tasks go to which leased worker (and whether to pipeline several on one), and
when a lease goes back.

No I/O and no clock: the submitter (``core/submitter.py``) hands in its queue and leases,
carries out the ``Plan`` it gets back and runs the idle timers (``idle_keep_s``) whose
expiry it reports to ``on_idle_timer``. Unit-tested in tests/unit/test_lease_policy.py.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

MAX_LEASE_REQUESTS_PER_KEY = 10
# A lease request spilled back to a node that fails (dead, not yet declared dead) goes
# back to the local raylet with that node excluded, after this pause; a request carries the
# latest this many nodes that refused it or failed to answer.
SPILLBACK_RETRY_S = 0.1
MAX_EXCLUDED_NODES = 16
LONG_TASK_S = 0.002  # tasks slower than this on average are not pipelined
# an owner blocked in get() keeps an idle lease this long at most: enough for a task
# looping over get(f.remote()) to submit its next call onto it, short against the stall
# a held worker causes its nested tasks
BLOCKED_OWNER_IDLE_KEEP_S = 0.01


class QueuedTask(Protocol):
    """A task waiting for a worker (``task_stream.TaskEntry``)."""

    cancelled: bool
    done: bool

    @property
    def spec(self) -> Any: ...  # a TaskSpec: its function_id is read


class HeldLease(Protocol):
    """A leased worker and its open task stream (``task_stream.Lease``)."""

    dead: bool
    closing: bool
    yielding: bool  # its raylet asked for it back: no new task; returned once drained

    @property
    def inflight(self) -> Collection[Any]: ...  # tasks sent and not finished


T = TypeVar("T", bound=QueuedTask)
L = TypeVar("L", bound=HeldLease)


class Plan(Generic[L, T]):
    """What to do now for one scheduling key (made on every pump: kept lean)."""

    __slots__ = ("sends", "request", "cancel_requests", "idle", "give_back")

    def __init__(self) -> None:
        self.sends: list[tuple[L, list[T]]] = []  # batches to push, per lease
        self.request = 0  # new lease requests to start
        self.cancel_requests = False  # drop the requests still waiting at the raylet
        self.idle: Sequence[L] = ()  # leases with nothing to do: start their return timers
        self.give_back: list[L] = []  # leases asked back by their raylet, now drained: return them


class IdleAction(enum.Enum):
    KEEP = "keep"  # the lease is busy again (or gone): nothing to do
    PUMP = "pump"  # work is queued: give it to the lease
    RETURN = "return"  # idle for idle_keep_s with nothing queued: give the worker back


class LeasePolicy:
    """Decisions for the leases of one scheduling key at a time.

    Pipelining (queueing a task behind another on a busy worker, up to
    ``max_in_flight``) happens only when there is more work than workers held or asked
    for, and only for tasks of functions seen to be short (< ``long_task_s`` on
    average): a few tasks submitted together each get a worker, and a function not
    seen yet (a key spans the functions of one resource shape) never waits behind
    another task for its first run. An idle lease is kept ``idle_keep_s`` for the next
    task of its key, then returned (at once, nearly, by an owner blocked in ``get()``).
    A lease its raylet asked back (``yielding``: other owners' requests wait there) takes
    no new task and is returned once the tasks it runs are done; with work still
    queued, the key asks for a lease again and waits its turn at the raylet.
    """

    def __init__(self, max_in_flight: int, idle_keep_s: float, *,
                 max_requests: int = MAX_LEASE_REQUESTS_PER_KEY, long_task_s: float = LONG_TASK_S) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self.idle_keep_s = idle_keep_s
        self.max_requests = max_requests
        self.long_task_s = long_task_s

    def plan(self, queue: deque[T], leases: Sequence[L], requesting: int, avg_task_s: Mapping[bytes, float],
             one_per_worker: bool = False, closed: bool = False, paced: bool = False) -> Plan[L, T]:
        """Take from ``queue`` the tasks to send now and say how many leases to ask for.

        ``requesting``: lease requests still waiting; ``avg_task_s``: function id ->
        average run time; ``one_per_worker``: never pipeline (workers of a ``max_calls``
        function); ``closed``: the submitter is shutting down (ask for nothing);
        ``paced``: when the task at the head of the queue is of a function seen to be
        short, ask for as many more leases as are held (at least one), not one per queued
        task: its tasks are pipelined, so a few workers run a burst of them, and every
        request a raylet cannot grant costs it a call and a cancellation (the lease count
        still doubles with every round of grants while work is queued).
        Cancelled or finished tasks met at the head of the queue are dropped."""
        plan: Plan[L, T] = Plan()
        live = []
        for lease in leases:
            if lease.dead or lease.closing:
                continue
            if lease.yielding:  # asked back: it takes no new task, and goes once drained
                if not lease.inflight:
                    plan.give_back.append(lease)
                continue
            live.append(lease)
        if not queue:  # after results: nothing to send, nothing to ask for
            plan.cancel_requests = requesting > 0 and not closed
            plan.idle = [lease for lease in live if not lease.inflight]
            return plan
        if len(queue) <= len(live) + requesting or one_per_worker:
            depth = 1
        else:
            depth = self.max_in_flight
        long_s = self.long_task_s
        unseen = long_s + 1
        sends = plan.sends
        for lease in live:
            room = depth - len(lease.inflight)
            if room <= 0:
                continue
            batch: list[T] = []
            while queue and room > 0:
                task = queue[0]
                if (lease.inflight or batch) and avg_task_s.get(task.spec.function_id, unseen) > long_s:
                    break  # it would wait behind other work: keep it for a free worker
                queue.popleft()
                if task.cancelled or task.done:
                    continue
                batch.append(task)
                room -= 1
            if batch:
                sends.append((lease, batch))
            if not queue:
                break
        if queue:
            if not closed:
                wanted = min(len(queue), self.max_requests)
                if paced and avg_task_s.get(queue[0].spec.function_id, unseen) <= long_s:
                    wanted = min(wanted, max(1, len(live)))
                plan.request = max(0, wanted - requesting)
            return plan
        plan.cancel_requests = requesting > 0 and not closed
        sent = [lease for lease, _ in sends]
        plan.idle = [lease for lease in live if not lease.inflight and lease not in sent]
        return plan

    def idle_keep(self, owner_blocked: bool) -> float:
        """How long a lease in ``Plan.idle`` is kept before its timer fires.

        An owner blocked in ``get()`` (a task waiting for its nested tasks) has lent its
        own CPU back; a worker it keeps idle would hold another CPU the tasks it waits
        for may need, for ``idle_keep_s`` each time (on a full node, a stall that long
        at every level of a recursion). So it keeps one only for
        ``BLOCKED_OWNER_IDLE_KEEP_S``."""
        return min(self.idle_keep_s, BLOCKED_OWNER_IDLE_KEEP_S) if owner_blocked else self.idle_keep_s

    def on_idle_timer(self, lease: HeldLease, queued: int) -> IdleAction:
        """A lease idle for ``idle_keep_s`` (its timer, started for a lease in
        ``Plan.idle``, fired): return it, unless it got work or work is queued."""
        if lease.inflight or lease.dead or lease.closing or lease.yielding:
            return IdleAction.KEEP
        if queued:
            return IdleAction.PUMP
        return IdleAction.RETURN

    @staticmethod
    def average(prev: float | None, sample: float) -> float:
        """The moving average of a function's run time after one more run."""
        return sample if prev is None else 0.8 * prev + 0.2 * sample


def excluding(exclude: list[str], node_id: str) -> list[str]:
    """``exclude`` with ``node_id`` added last (at most ``MAX_EXCLUDED_NODES``, the latest)."""
    return [*(n for n in exclude if n != node_id), node_id][-MAX_EXCLUDED_NODES:]
