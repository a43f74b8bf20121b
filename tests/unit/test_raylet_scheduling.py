"""The raylet's lease decision (``microray.raylet.scheduling.decide``), pure: the policy
decides every request, spillback targets grant or reject, excluded nodes are left out,
and requests no node fits pend (waiting, or infeasible when no alive node ever could)."""

from __future__ import annotations

from concurrent.futures import Future  # a future with no event loop
from types import SimpleNamespace

import pytest

from microray.interfaces.scheduling import ClusterView, NodeView, SchedulingRequest
from microray.plugins.scheduling.hybrid import HybridPolicy
from microray.protocol import common_pb2, raylet_pb2
from microray.raylet.leases import LeaseManager, PendingLease
from microray.raylet.scheduling import (
    INFEASIBLE, LOCAL, REJECT, SPILL, WAIT, Decision, LeaseScheduler, Waiting, decide, demand_summary, without,
)
from microray.util.state import resource_demands


def view(local: str = "a", **nodes: tuple[dict, dict]) -> ClusterView:
    """``name=(total, available)`` per node; ``dead_<name>`` for a dead node."""
    out = {}
    for name, (total, available) in nodes.items():
        alive = not name.startswith("dead_")
        node_id = name.removeprefix("dead_")
        out[node_id] = NodeView(node_id, total, available, alive)
    return ClusterView(out, local)


class Counting:
    """A policy that records its calls and answers what it is told."""

    name = "counting"

    def __init__(self, answer=None) -> None:
        self.answer = answer
        self.calls: list[tuple[SchedulingRequest, ClusterView]] = []

    def select_node(self, request, cluster):
        self.calls.append((request, cluster))
        return self.answer(request, cluster) if callable(self.answer) else self.answer


CPU1 = {"CPU": 1.0}


def test_the_policy_is_asked_on_a_one_node_cluster():
    policy = Counting("a")
    assert decide(policy, SchedulingRequest(CPU1), view(a=(CPU1, CPU1))) == Decision(LOCAL, "a")
    assert len(policy.calls) == 1


def test_a_local_node_that_is_full_queues_the_request_locally():
    d = decide(HybridPolicy(), SchedulingRequest(CPU1), view(a=(CPU1, {"CPU": 0.0})))
    assert d == Decision(WAIT, "a")


def test_a_request_that_fits_only_elsewhere_spills_back_there():
    v = view(a=(CPU1, CPU1), b=({"CPU": 1.0, "custom": 1.0}, {"CPU": 1.0, "custom": 1.0}))
    assert decide(HybridPolicy(), SchedulingRequest({"custom": 1.0}), v) == Decision(SPILL, "b")


def test_excluded_nodes_are_left_out_of_the_policy_view_but_still_count_as_feasible():
    shape = {"custom": 1.0}
    both = ({"custom": 1.0}, {"custom": 1.0})
    v = view(a=(CPU1, CPU1), b=both, c=both)
    policy = Counting(lambda r, c: min((n for n in c.nodes if c.nodes[n].fits(r.resources)), default=None))
    assert decide(policy, SchedulingRequest(shape), v) == Decision(SPILL, "b")
    assert decide(policy, SchedulingRequest(shape), v, exclude={"b"}) == Decision(SPILL, "c")
    assert "b" not in policy.calls[-1][1].nodes
    # every node that fits excluded: it waits (a refusal is not for ever), it is not infeasible
    assert decide(policy, SchedulingRequest(shape), v, exclude={"b", "c"}) == Decision(WAIT, "")
    assert without(v, {"a"}).nodes.keys() == v.nodes.keys()  # the local node is never left out


def test_no_alive_node_could_ever_fit_it_then_it_is_infeasible():
    v = view(a=({"CPU": 2.0}, {"CPU": 2.0}), dead_b=({"CPU": 64.0}, {"CPU": 64.0}))
    assert decide(HybridPolicy(), SchedulingRequest({"CPU": 64.0}), v) == Decision(INFEASIBLE)
    v2 = view(a=({"CPU": 2.0}, {"CPU": 2.0}), b=({"CPU": 64.0}, {"CPU": 64.0}))
    assert decide(HybridPolicy(), SchedulingRequest({"CPU": 64.0}), v2) == Decision(SPILL, "b")


def test_a_spillback_target_grants_what_fits_after_its_queue_and_rejects_the_rest():
    v = view(a=({"CPU": 2.0}, {"CPU": 2.0}))
    policy = Counting("elsewhere")
    assert decide(policy, SchedulingRequest(CPU1), v, grant_or_reject=True, local_spare={"CPU": 1.0}).kind == LOCAL
    assert decide(policy, SchedulingRequest(CPU1), v, grant_or_reject=True, local_spare={"CPU": 0.0}) == Decision(REJECT)
    assert not policy.calls  # the policy of the node that spilled it chose already


def test_a_hard_affinity_is_that_node_or_none_whatever_the_policy_says():
    v = view(a=(CPU1, CPU1), b=(CPU1, {"CPU": 0.0}))
    hard_b = {"type": "node_affinity", "node_id": "b", "soft": False}
    assert decide(Counting("a"), SchedulingRequest(CPU1, hard_b), v) == Decision(WAIT, "")
    v_big = view(a=({"CPU": 8.0}, {"CPU": 8.0}), b=(CPU1, CPU1))
    assert decide(Counting(None), SchedulingRequest({"CPU": 4.0}, hard_b), v_big) == Decision(INFEASIBLE)


def test_a_policy_naming_a_node_it_was_not_offered_is_an_error_naming_the_policy():
    v = view(a=(CPU1, CPU1), dead_b=(CPU1, CPU1))
    with pytest.raises(ValueError, match="'counting' chose node 'b'"):
        decide(Counting("b"), SchedulingRequest(CPU1), v)
    with pytest.raises(ValueError, match="chose node 'zz'"):
        decide(Counting("zz"), SchedulingRequest(CPU1), v)


def test_demands_are_counted_by_shape_and_summed_over_alive_nodes():
    rows = demand_summary([(CPU1, False), ({"CPU": 1.0, "GPU": 0.0}, False), ({"CPU": 64.0}, True)])
    assert [(dict(d.shape.amounts), d.count, d.infeasible) for d in rows] == [
        ({"CPU": 1.0}, 2, False), ({"CPU": 64.0}, 1, True)]
    nodes = [
        {"state": "ALIVE", "pending_demands": [{"resources": CPU1, "count": 2, "infeasible": False}]},
        {"state": "ALIVE", "pending_demands": [{"resources": CPU1, "count": 1, "infeasible": False},
                                               {"resources": {"CPU": 64.0}, "count": 1, "infeasible": True}]},
        {"state": "DEAD", "pending_demands": [{"resources": CPU1, "count": 5, "infeasible": False}]},
    ]
    assert resource_demands(nodes) == {
        "pending": [{"resources": CPU1, "count": 3}],
        "infeasible": [{"resources": {"CPU": 64.0}, "count": 1}],
    }


# -- LeaseScheduler: requests pending at a raylet are decided again when the view changes --


def fake_raylet(total: dict) -> SimpleNamespace:
    r = SimpleNamespace(node_id="a", total=total, leases=LeaseManager(total), remote_nodes={}, _answers={},
                        cfg=SimpleNamespace(heartbeat_period_s=0.5, labels={}), dispatched=0,
                        owners=SimpleNamespace(watch=lambda *a: None))
    r.dispatch = lambda: setattr(r, "dispatched", r.dispatched + 1)
    return r


def remote(node_id: str, total: dict, available: dict | None = None) -> common_pb2.NodeInfo:
    return common_pb2.NodeInfo(node_id=node_id, ip="10.0.0.2", raylet_port=7000, state="ALIVE",
                               total=common_pb2.ResourceMap(amounts=total),
                               available=common_pb2.ResourceMap(amounts=available or total))


def test_an_infeasible_request_is_spilled_to_a_node_that_joins_and_its_demand_goes():
    r = fake_raylet({"CPU": 1.0})
    sched = LeaseScheduler(r, HybridPolicy())
    big = SchedulingRequest({"CPU": 64.0})
    sched.waiting["L1"] = Waiting("L1", raylet_pb2.LeaseRequest(), big, frozenset(), infeasible=True)
    r._answers["L1"] = fut = Future()
    sched.redecide(view_changed=False)  # local resources freed: nothing new for it
    assert [(d.count, d.infeasible) for d in sched.demands()] == [(1, True)] and not fut.done()
    r.remote_nodes["b"] = remote("b", {"CPU": 64.0})
    sched.redecide(view_changed=True)
    assert fut.result().spillback.node_id == "b" and fut.result().spillback.port == 7000
    assert not sched.waiting and sched.demands() == []


def test_a_request_queued_on_a_busy_node_goes_to_a_node_that_frees_up():
    r = fake_raylet({"CPU": 1.0})
    r.leases.available["CPU"] = 0.0  # busy
    sched = LeaseScheduler(r, HybridPolicy())
    r.leases.submit(PendingLease("L1", {"CPU": 1.0}, token=SchedulingRequest({"CPU": 1.0})))
    r.leases.submit(PendingLease("L2", {"CPU": 1.0}, token=None))  # a spilled-in request: stays
    f1, f2 = Future(), Future()
    r._answers.update(L1=f1, L2=f2)
    r.remote_nodes["b"] = remote("b", {"CPU": 1.0}, {"CPU": 0.0})
    sched.redecide(view_changed=True)
    assert [p.lease_id for p in r.leases.pending] == ["L1", "L2"]  # nowhere better yet
    r.remote_nodes["b"] = remote("b", {"CPU": 1.0})
    sched.redecide(view_changed=True)
    assert f1.result().spillback.node_id == "b" and not f2.done()
    assert [p.lease_id for p in r.leases.pending] == ["L2"]
