"""The raylet's lease decision (``microray.raylet.scheduling.decide``), pure: the policy
decides every request, spillback targets grant or reject, excluded nodes are left out,
and requests no node fits pend (waiting, or infeasible when no alive node ever could)."""

from __future__ import annotations

import pytest

from microray.interfaces.scheduling import ClusterView, NodeView, SchedulingRequest
from microray.plugins.scheduling.hybrid import HybridPolicy
from microray.raylet.scheduling import (
    INFEASIBLE, LOCAL, REJECT, SPILL, WAIT, Decision, decide, demand_summary, without,
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
