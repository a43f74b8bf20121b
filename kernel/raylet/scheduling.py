"""Where a lease request runs: the raylet's side of scheduling.

Every lease request a raylet receives goes to the configured ``SchedulingPolicy``
(on one node too), and the answer decides what happens to it:

* the local node: it joins the local queue and is granted when resources free up;
* another node: the caller is told to spill back to that node (which grants it at once
  or refuses it: ``grant_or_reject``);
* none fits now: it pends here, in the local queue when this node could run it once
  resources free up, else in ``waiting``; waiting requests (and queued ones that no
  longer fit here) are decided again whenever the cluster view changes;
* no alive node could ever fit it: it pends here as *infeasible*, visible in
  ``microray status``, until a node that fits it joins.

A node that refused a spillback or did not answer it comes back in the request's
``exclude_nodes``: the policy chooses among the other nodes. ``decide`` is the pure
core (unit-tested); ``LeaseScheduler`` carries its decisions out for one raylet.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from microray.interfaces.scheduling import ClusterView, NodeView, SchedulingPolicy, SchedulingRequest, sum_resources
from microray.protocol import common_pb2, raylet_pb2
from microray.raylet.leases import PendingLease

log = structlog.get_logger(__name__)

EPS = 1e-9
LOCAL = "local"            # queue here; granted when resources free up
SPILL = "spill"            # answer: ask node ``node_id``
WAIT = "wait"              # none fits now; ``node_id`` is this node when it could run it later
INFEASIBLE = "infeasible"  # no alive node could ever fit it
REJECT = "reject"          # a spillback target that cannot grant it now


@dataclass(frozen=True)
class Decision:
    kind: str
    node_id: str = ""


def hard_affinity_target(strategy: object) -> str | None:
    """The node a hard node-affinity strategy names (None for every other strategy)."""
    if isinstance(strategy, dict) and strategy.get("type") == "node_affinity" and not strategy.get("soft"):
        return str(strategy.get("node_id"))
    return None


def _fits(available: Mapping[str, float], demand: Mapping[str, float]) -> bool:
    return all(available.get(k, 0.0) + EPS >= v for k, v in demand.items() if v > 0)


def without(view: ClusterView, exclude: Collection[str]) -> ClusterView:
    """``view`` minus the nodes in ``exclude`` (never the local node)."""
    if not exclude:
        return view
    local = view.local_node_id
    return ClusterView({k: n for k, n in view.nodes.items() if k == local or k not in exclude}, local)


def decide(
    policy: SchedulingPolicy,
    request: SchedulingRequest,
    view: ClusterView,
    exclude: Collection[str] = (),
    grant_or_reject: bool = False,
    local_spare: Mapping[str, float] | None = None,
) -> Decision:
    """What to do with ``request`` now (pure).

    ``grant_or_reject``: this node is a spillback target: LOCAL when the request fits in
    ``local_spare`` (what is free once the local queue is served; default the local
    node's available resources), else REJECT (the caller asks the policy again without
    this node). Otherwise the policy chooses among the nodes not in ``exclude``. When
    it chooses none, the request WAITs if some alive node could ever run it (the node a
    hard affinity names, else any node, excluded ones included: a refusal is not for
    ever), and is INFEASIBLE if none could. Raises ``ValueError`` when the policy names
    a node that is not an alive node of ``view``.
    """
    local = view.local_node_id
    if grant_or_reject:
        spare = local_spare if local_spare is not None else view.nodes[local].available
        return Decision(LOCAL, local) if _fits(spare, request.resources) else Decision(REJECT)
    chosen = policy.select_node(request, without(view, exclude))
    target = hard_affinity_target(request.strategy)
    if target is not None and chosen != target:
        chosen = None  # a hard affinity is a constraint: that node or none
    if chosen == local:
        return Decision(LOCAL, local)
    if chosen is not None:
        node = view.nodes.get(chosen)
        if node is None or not node.alive or chosen in exclude:
            raise ValueError(
                f"the scheduling policy {getattr(policy, 'name', type(policy).__name__)!r} chose node "
                f"{chosen!r}, which is not an alive node it was offered; a policy must return one of "
                "the ClusterView's alive nodes where the request fits, or None"
            )
        return Decision(SPILL, chosen)
    candidates: list[NodeView] = (
        [n for n in (view.nodes.get(target),) if n is not None] if target is not None else list(view.nodes.values())
    )
    feasible = [n for n in candidates if n.alive and n.feasible(request.resources)]
    if not feasible:
        return Decision(INFEASIBLE)
    local_node = view.nodes[local]
    return Decision(WAIT, local if local_node in feasible else "")


def demand_summary(entries: Collection[tuple[Mapping[str, float], bool]]) -> list[common_pb2.ResourceDemand]:
    """Count lease requests by (resource shape, infeasible)."""
    counts: dict[tuple[tuple[tuple[str, float], ...], bool], int] = {}
    for shape, infeasible in entries:
        key = (tuple(sorted((k, v) for k, v in shape.items() if v)), infeasible)
        counts[key] = counts.get(key, 0) + 1
    return [
        common_pb2.ResourceDemand(shape=common_pb2.ResourceMap(amounts=dict(shape)), count=n, infeasible=inf)
        for (shape, inf), n in sorted(counts.items())
    ]


@dataclass
class Waiting:
    """A lease request pending here with no node to run it yet."""

    lease_id: str
    request: Any                       # the raylet_pb2.LeaseRequest
    sreq: SchedulingRequest
    exclude: frozenset[str]
    created: float = field(default_factory=time.monotonic)
    infeasible: bool = False


class LeaseScheduler:
    """Decides, for one raylet, where each lease request runs (see the module doc).

    ``raylet`` gives the node's state: ``node_id``, ``total``, ``cfg``, ``leases`` (the
    ``LeaseManager``), ``remote_nodes``, ``_answers`` (lease id -> the future its caller
    waits on), ``dispatch()``, ``owners``, ``runtime_envs``, ``actor_leases`` and
    ``_stop_superseded_actor_worker``."""

    def __init__(self, raylet: Any, policy: SchedulingPolicy) -> None:
        self.raylet = raylet
        self.policy = policy
        self.waiting: dict[str, Waiting] = {}
        self._warned_infeasible: set[tuple] = set()
        # a node that refused a spillback is left out of the request's decisions this long
        self.exclude_s = 2 * raylet.cfg.heartbeat_period_s

    # -- the cluster view ----------------------------------------------------------
    def cluster_view(self) -> ClusterView:
        r = self.raylet
        nodes = {r.node_id: NodeView(r.node_id, dict(r.total), dict(r.leases.available), True, dict(r.cfg.labels))}
        for node_id, info in r.remote_nodes.items():
            nodes[node_id] = NodeView(
                node_id, dict(info.total.amounts), dict(info.available.amounts), info.state == "ALIVE",
                dict(info.labels),
            )
        return ClusterView(nodes=nodes, local_node_id=r.node_id)

    def alive_node_ids(self) -> list[str]:
        r = self.raylet
        return [r.node_id] + [n for n, info in r.remote_nodes.items() if info.state == "ALIVE"]

    def _spill(self, node_id: str) -> raylet_pb2.LeaseReply:
        info = self.raylet.remote_nodes[node_id]
        return raylet_pb2.LeaseReply(spillback=common_pb2.Address(ip=info.ip, port=info.raylet_port, node_id=node_id))

    def _spare(self) -> dict[str, float]:
        """The local resources free once every lease queued here is served."""
        spare = dict(self.raylet.leases.available)
        for p in self.raylet.leases.pending:
            for k, v in p.resources.items():
                spare[k] = spare.get(k, 0.0) - v
        return spare

    def demands(self) -> list[common_pb2.ResourceDemand]:
        """The lease requests held here with no worker yet, by shape (heartbeats carry them)."""
        entries = [(p.resources, False) for p in self.raylet.leases.pending]
        entries += [(w.sreq.resources, w.infeasible) for w in self.waiting.values()]
        return demand_summary(entries)

    # -- requests --------------------------------------------------------------------
    async def request_lease(self, request: Any) -> raylet_pb2.LeaseReply:
        """Answer one ``RequestWorkerLease``: a grant, a spillback, a refusal, or an error."""
        r = self.raylet
        resources = dict(request.resources.amounts)
        strategy = pickle.loads(request.strategy) if request.strategy else "DEFAULT"
        sreq = SchedulingRequest(resources, strategy, request.task_name)
        target = hard_affinity_target(strategy)
        if target is not None and target != r.node_id:
            info = r.remote_nodes.get(target)
            if info is None or info.state != "ALIVE":  # a hard constraint nobody can meet
                return raylet_pb2.LeaseReply(error=(
                    f"{request.task_name or 'the task'} has a hard node affinity (soft=False) to node "
                    f"{target!r}, which is not an alive node of the cluster (alive: "
                    f"{', '.join(sorted(self.alive_node_ids()))}); use soft=True to run it elsewhere "
                    "when that node is not there"
                ))
        exclude = frozenset(request.exclude_nodes)
        view = self.cluster_view()
        try:
            # what is spare here matters only to a spillback target (grant or reject)
            spare = self._spare() if request.grant_or_reject else None
            decision = decide(self.policy, sreq, view, exclude, request.grant_or_reject, spare)
        except ValueError as exc:
            return raylet_pb2.LeaseReply(error=f"{request.task_name or 'the task'} cannot be scheduled: {exc}")
        if decision.kind == SPILL:
            return self._spill(decision.node_id)
        if decision.kind == REJECT:
            return raylet_pb2.LeaseReply(rejected=True)
        if decision.kind == INFEASIBLE:
            self._warn_infeasible(sreq, request)
            if request.report_infeasible:  # the owner warns its user, then asks again to wait
                return raylet_pb2.LeaseReply(infeasible=True, cluster_total=common_pb2.ResourceMap(
                    amounts=sum_resources(n.total for n in view.nodes.values() if n.alive)))
        local = decision.kind == LOCAL or (decision.kind == WAIT and decision.node_id == r.node_id)
        if local and request.runtime_env_hash and request.runtime_env_hash not in r.runtime_envs.ready:
            problem = await r.runtime_envs.prepare(request.runtime_env_hash)  # packages unpacked here
            if problem:
                return raylet_pb2.LeaseReply(error=f"{request.task_name or 'the task'}: {problem}")
        lease_id = r.leases.new_lease_id()
        if local and not (decision.kind == WAIT and r.leases.fits(resources)):
            if not self._queue_local(lease_id, request, sreq, redecide=not request.grant_or_reject):
                return raylet_pb2.LeaseReply(canceled=True, error=f"the lease owner {request.owner_worker_id} is dead")
        else:  # no node now (or the policy passed over this one while it fits): decided again later
            if request.owner_worker_id and request.owner_worker_id in r.leases.dead_owners:
                return raylet_pb2.LeaseReply(canceled=True, error=f"the lease owner {request.owner_worker_id} is dead")
            r.owners.watch(request.owner_worker_id, request.owner_address)
            self.waiting[lease_id] = Waiting(lease_id, request, sreq, exclude, infeasible=decision.kind == INFEASIBLE)
        fut = asyncio.get_running_loop().create_future()
        r._answers[lease_id] = fut
        r.dispatch()
        try:
            answer = await fut
        except asyncio.CancelledError:
            r._answers.pop(lease_id, None)
            self.waiting.pop(lease_id, None)
            r.leases.cancel(lambda p: p.lease_id == lease_id)
            if lease_id in r.leases.by_lease:
                r.leases.release(lease_id)
                r.dispatch()
            raise
        if answer is None:
            return raylet_pb2.LeaseReply(canceled=True)
        if isinstance(answer, raylet_pb2.LeaseReply):
            return answer
        if request.actor_spec and request.lease_key:
            r.actor_leases[request.lease_key] = lease_id
        host, port = answer.address.rsplit(":", 1)
        return raylet_pb2.LeaseReply(
            granted=True,
            worker=common_pb2.Address(ip=host, port=int(port), node_id=r.node_id, worker_id=answer.worker_id),
            lease_id=lease_id,
            worker_pid=answer.pid,
        )

    def _queue_local(self, lease_id: str, request: Any, sreq: SchedulingRequest, redecide: bool) -> bool:
        """Queue the request here; False when its owner is known to be dead."""
        r = self.raylet
        hold = None
        is_actor = bool(request.actor_spec)
        if is_actor:
            hold = pickle.loads(request.actor_spec).get("hold", {})
        lease = PendingLease(
            lease_id=lease_id, resources=dict(sreq.resources), env_hash=request.runtime_env_hash, hold=hold,
            is_actor=is_actor, owner=request.owner_worker_id, owner_address=request.owner_address,
            lease_key=request.lease_key,
            token=sreq if redecide else None,
        )
        if not r.leases.submit(lease):
            return False
        r.owners.watch(request.owner_worker_id, request.owner_address)
        if is_actor and request.lease_key:
            r._stop_superseded_actor_worker(request.lease_key)
        return True

    def _warn_infeasible(self, sreq: SchedulingRequest, request: Any) -> None:
        shape = tuple(sorted(sreq.resources.items()))
        if shape in self._warned_infeasible:
            return
        self._warned_infeasible.add(shape)
        log.warning("infeasible_task", resources=dict(sreq.resources), node_total=self.raylet.total,
                    task=request.task_name, hint="the task pends until a node with these resources joins")

    def cancel(self, predicate: Any) -> list[str]:
        """Drop the waiting requests whose ``Waiting.request`` matches; their lease ids."""
        dropped = [w.lease_id for w in self.waiting.values() if predicate(w.request)]
        for lease_id in dropped:
            del self.waiting[lease_id]
        return dropped

    # -- deciding again ----------------------------------------------------------------
    def redecide(self, view_changed: bool) -> None:
        """Decide again for the requests pending here: every waiting one when the cluster
        view changed (a node joined, left or reported its resources), else (local
        resources freed) those that are not infeasible. With other nodes in the view, the
        locally queued requests that do not fit here now go to another node that fits."""
        r = self.raylet
        if view_changed:
            if not self.waiting and not (r.leases.pending and r.remote_nodes):
                return
        elif all(w.infeasible for w in self.waiting.values()):
            return  # freed local resources change nothing for those
        view = self.cluster_view()
        queued = False
        now = time.monotonic()
        answers = r._answers
        for w in list(self.waiting.values()):
            if w.infeasible and not view_changed:
                continue
            exclude = w.exclude if now - w.created < self.exclude_s else frozenset()
            try:
                d = decide(self.policy, w.sreq, view, exclude)
            except ValueError as exc:
                d = Decision("error", str(exc))
            # it stays unless some node takes it (or it can queue here for local resources)
            if d.kind == INFEASIBLE or (d.kind == WAIT and (d.node_id != r.node_id or r.leases.fits(w.sreq.resources))):
                w.infeasible = d.kind == INFEASIBLE
                continue
            del self.waiting[w.lease_id]
            fut = answers.get(w.lease_id)
            if fut is None or fut.done():
                continue
            if d.kind == SPILL:
                answers.pop(w.lease_id)
                fut.set_result(self._spill(d.node_id))
            elif d.kind == "error":
                answers.pop(w.lease_id)
                fut.set_result(raylet_pb2.LeaseReply(error=f"{w.request.task_name or 'the task'} cannot be "
                                                           f"scheduled: {d.node_id}"))
            elif self._queue_local(w.lease_id, w.request, w.sreq, redecide=True):
                queued = True
            else:
                answers.pop(w.lease_id)
                fut.set_result(None)
        if view_changed and r.remote_nodes:
            self._respill_queued(view)
        if queued and view_changed:
            r.dispatch()  # (from dispatch itself, its own grant pass follows)

    def _respill_queued(self, view: ClusterView) -> None:
        """Requests queued here that do not fit here now go to another node that fits them."""
        r = self.raylet
        moved: dict[str, str] = {}
        for p in r.leases.pending:
            if p.token is None or r.leases.fits(p.resources):
                continue
            try:
                chosen = self.policy.select_node(p.token, view)
            except ValueError:
                continue
            if chosen is not None and chosen != r.node_id and chosen in r.remote_nodes:
                moved[p.lease_id] = chosen
        if not moved:
            return
        r.leases.cancel(lambda p: p.lease_id in moved)
        for lease_id, node_id in moved.items():
            fut = r._answers.pop(lease_id, None)
            if fut is not None and not fut.done():
                fut.set_result(self._spill(node_id))
        log.debug("queued_leases_spilled", count=len(moved))
