"""The submitter's lease decisions (core/lease_policy.py), without a process or a socket."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from microray.core.lease_policy import BLOCKED_OWNER_IDLE_KEEP_S, IdleAction, LeasePolicy

SHORT, LONG = b"short", b"long"
AVG = {SHORT: 0.0005, LONG: 0.5}


@dataclass(eq=False)
class Task:
    function_id: bytes = SHORT
    cancelled: bool = False
    done: bool = False

    @property
    def spec(self) -> SimpleNamespace:
        return SimpleNamespace(function_id=self.function_id)


@dataclass(eq=False)
class Lease:
    inflight: list = field(default_factory=list)
    dead: bool = False
    closing: bool = False
    yielding: bool = False


def tasks(n: int, fid: bytes = SHORT) -> deque:
    return deque(Task(fid) for _ in range(n))


def sent(plan) -> dict[int, int]:
    return {id(lease): len(batch) for lease, batch in plan.sends}


policy = LeasePolicy(max_in_flight=4, idle_keep_s=1.5)


def test_with_no_lease_it_asks_for_one_per_queued_task_up_to_the_cap() -> None:
    plan = policy.plan(tasks(3), [], requesting=0, avg_task_s=AVG)
    assert (plan.sends, plan.request, plan.cancel_requests, list(plan.idle)) == ([], 3, False, [])
    assert policy.plan(tasks(25), [], requesting=0, avg_task_s=AVG).request == 10
    assert policy.plan(tasks(25), [], requesting=4, avg_task_s=AVG).request == 6
    assert policy.plan(tasks(25), [], requesting=12, avg_task_s=AVG).request == 0


def test_paced_short_tasks_ask_for_as_many_leases_as_are_held() -> None:
    # nothing held: one request, whatever the burst
    assert policy.plan(tasks(25), [], requesting=0, avg_task_s=AVG, paced=True).request == 1
    assert policy.plan(tasks(25), [], requesting=1, avg_task_s=AVG, paced=True).request == 0
    # each round of grants doubles what the key holds or asks for while work is queued
    held = [Lease(inflight=[Task()] * 4) for _ in range(3)]
    plan = policy.plan(tasks(25), held, requesting=0, avg_task_s=AVG, paced=True)
    assert plan.sends == [] and plan.request == 3
    assert policy.plan(tasks(2), held, requesting=0, avg_task_s=AVG, paced=True).request == 2
    # a function not seen yet or seen to be long: one request per queued task, as unpaced
    assert policy.plan(tasks(25, LONG), [], requesting=0, avg_task_s=AVG, paced=True).request == 10
    assert policy.plan(tasks(25, b"unseen"), [], requesting=0, avg_task_s=AVG, paced=True).request == 10
    # a lease asked back is not counted as held
    plan = policy.plan(tasks(25), [Lease(inflight=[Task()], yielding=True)], requesting=0, avg_task_s=AVG,
                       paced=True)
    assert plan.request == 1


def test_a_free_worker_gets_one_task_and_waiting_requests_are_cancelled() -> None:
    lease, queue = Lease(), tasks(1)
    plan = policy.plan(queue, [lease], requesting=2, avg_task_s=AVG)
    assert sent(plan) == {id(lease): 1} and not queue
    assert plan.request == 0 and plan.cancel_requests
    assert plan.idle == []  # it just got work


def test_few_tasks_are_not_pipelined_each_waits_for_its_own_worker() -> None:
    # 2 tasks, 1 lease + 1 request in flight: no more work than workers, so depth 1
    lease, queue = Lease(), tasks(2)
    plan = policy.plan(queue, [lease], requesting=1, avg_task_s=AVG)
    assert sent(plan) == {id(lease): 1} and len(queue) == 1
    assert plan.request == 0  # the request in flight covers the task left


def test_more_short_work_than_workers_is_pipelined_up_to_max_in_flight() -> None:
    a, b = Lease(), Lease()
    queue = tasks(10)
    plan = policy.plan(queue, [a, b], requesting=0, avg_task_s=AVG)
    assert sent(plan) == {id(a): 4, id(b): 4} and len(queue) == 2
    assert plan.request == 2


def test_pipelining_counts_what_a_worker_already_runs() -> None:
    busy = Lease(inflight=[object()] * 3)
    queue = tasks(10)
    plan = policy.plan(queue, [busy], requesting=0, avg_task_s=AVG)
    assert sent(plan) == {id(busy): 1}


def test_a_long_or_unseen_function_never_waits_behind_other_work() -> None:
    busy = Lease(inflight=[object()])
    for fid in (LONG, b"never-seen"):
        queue = tasks(5, fid)
        plan = policy.plan(queue, [busy], requesting=0, avg_task_s=AVG)
        assert plan.sends == [] and len(queue) == 5 and plan.request == 5
    # on a free worker it runs, alone
    free = Lease()
    queue = tasks(5, LONG)
    plan = policy.plan(queue, [free], requesting=0, avg_task_s=AVG)
    assert sent(plan) == {id(free): 1}


def test_max_calls_workers_run_one_task_at_a_time() -> None:
    lease, queue = Lease(), tasks(10)
    plan = policy.plan(queue, [lease], requesting=0, avg_task_s=AVG, one_per_worker=True)
    assert sent(plan) == {id(lease): 1}


def test_cancelled_and_finished_tasks_are_dropped_from_the_queue() -> None:
    lease, live = Lease(), Task()
    queue = deque([Task(cancelled=True), Task(done=True), live])
    plan = policy.plan(queue, [lease], requesting=0, avg_task_s=AVG)
    assert plan.sends == [(lease, [live])] and not queue


def test_dead_and_closing_leases_get_nothing() -> None:
    dead, closing = Lease(dead=True), Lease(closing=True)
    queue = tasks(2)
    plan = policy.plan(queue, [dead, closing], requesting=0, avg_task_s=AVG)
    assert plan.sends == [] and plan.request == 2 and not plan.idle


def test_a_closed_submitter_asks_for_and_cancels_nothing() -> None:
    assert policy.plan(tasks(3), [], requesting=0, avg_task_s=AVG, closed=True).request == 0
    assert not policy.plan(deque(), [], requesting=3, avg_task_s=AVG, closed=True).cancel_requests


def test_with_nothing_queued_the_free_leases_go_idle() -> None:
    free, busy = Lease(), Lease(inflight=[object()])
    plan = policy.plan(deque(), [free, busy], requesting=0, avg_task_s=AVG)
    assert plan.idle == [free] and not plan.cancel_requests and plan.request == 0


def test_an_idle_lease_goes_back_after_idle_keep_unless_work_arrived() -> None:
    assert policy.on_idle_timer(Lease(), queued=0) is IdleAction.RETURN
    assert policy.on_idle_timer(Lease(), queued=3) is IdleAction.PUMP
    assert policy.on_idle_timer(Lease(inflight=[object()]), queued=0) is IdleAction.KEEP
    assert policy.on_idle_timer(Lease(dead=True), queued=0) is IdleAction.KEEP
    assert policy.on_idle_timer(Lease(closing=True), queued=0) is IdleAction.KEEP


def test_run_times_are_a_moving_average() -> None:
    assert LeasePolicy.average(None, 0.01) == 0.01
    assert LeasePolicy.average(0.01, 0.02) == pytest.approx(0.012)


def test_max_in_flight_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_in_flight must be >= 1, got 0"):
        LeasePolicy(max_in_flight=0, idle_keep_s=1.0)


def test_an_owner_blocked_in_get_keeps_no_idle_lease() -> None:
    # a task waiting for its nested tasks has lent its CPU back; an idle worker it kept
    # would sit on a CPU those tasks may need
    assert policy.idle_keep(owner_blocked=False) == 1.5
    assert policy.idle_keep(owner_blocked=True) == BLOCKED_OWNER_IDLE_KEEP_S < 1.5
    assert LeasePolicy(max_in_flight=1, idle_keep_s=0).idle_keep(owner_blocked=True) == 0


def test_a_lease_asked_back_takes_no_new_task_and_is_given_back_once_drained() -> None:
    busy = Lease(inflight=[Task()], yielding=True)
    other = Lease()
    queue = tasks(3, LONG)
    plan = policy.plan(queue, [busy, other], requesting=0, avg_task_s=AVG)
    assert sent(plan) == {id(other): 1}  # nothing for the yielding lease
    assert plan.give_back == []  # it still runs a task
    assert plan.request == 2  # the key asks again for the work left: it waits its turn at the raylet
    other.inflight.extend(plan.sends[0][1])
    busy.inflight.clear()
    plan = policy.plan(queue, [busy, other], requesting=2, avg_task_s=AVG)
    assert plan.give_back == [busy] and sent(plan) == {}


def test_an_idle_lease_asked_back_goes_at_once_and_its_idle_timer_keeps_it_no_more() -> None:
    lease = Lease(yielding=True)
    plan = policy.plan(deque(), [lease], requesting=0, avg_task_s=AVG)
    assert plan.give_back == [lease] and list(plan.idle) == []
    assert policy.on_idle_timer(lease, queued=0) is IdleAction.KEEP  # given back already


def test_a_key_counts_on_no_request_a_cancel_on_its_way_drops() -> None:
    from microray.core.task_stream import KeyState

    state = KeyState({"CPU": 1.0}, "DEFAULT", "")
    state.requesting = 8
    assert state.start_cancel() and state.planned_requests() == 0
    assert not state.start_cancel()  # one cancel at a time
    state.requesting += 1  # asked again meanwhile: that one is counted on
    assert state.planned_requests() == 1
    for _ in range(3):  # dropped requests come back
        state.request_done(granted=False)
    assert (state.requesting, state.doomed, state.planned_requests()) == (6, 5, 1)
    state.cancel_done(dropped=3)  # what is left (late arrivals at the raylet) waits again
    assert (state.doomed, state.planned_requests()) == (0, 6) and state.start_cancel()


def test_requests_a_cancel_dropped_stay_uncounted_when_the_cancel_returns_before_their_answers() -> None:
    from microray.core.task_stream import KeyState

    state = KeyState({"CPU": 1.0}, "DEFAULT", "")
    state.requesting = 8
    assert state.start_cancel()
    state.request_done(granted=True)  # granted before the cancel reached the raylet
    state.request_done(granted=False)  # dropped, answered before the cancel's reply
    state.cancel_done(dropped=6)  # one request reached the raylet after the cancel: it waits
    assert (state.requesting, state.doomed, state.planned_requests()) == (6, 5, 1)
    for _ in range(5):  # the other dropped requests' answers come in after the cancel's
        state.request_done(granted=False)
    assert (state.requesting, state.doomed, state.planned_requests()) == (1, 0, 1)
    state.request_done(granted=True)  # the late one is granted later
    assert (state.requesting, state.doomed) == (0, 0)


def test_a_failed_cancel_leaves_every_request_counted_on() -> None:
    from microray.core.task_stream import KeyState

    state = KeyState({"CPU": 1.0}, "DEFAULT", "")
    state.requesting = 4
    assert state.start_cancel() and state.planned_requests() == 0
    state.cancel_done(dropped=0)
    assert state.planned_requests() == 4
    state.request_done(granted=True)  # a grant after the cancel never makes the count negative
    assert (state.requesting, state.doomed, state.planned_requests()) == (3, 0, 3)


def test_a_spilled_request_excludes_the_latest_refusing_nodes() -> None:
    from microray.core.lease_policy import MAX_EXCLUDED_NODES, excluding

    assert excluding(["a", "b"], "a") == ["b", "a"]
    many = [str(i) for i in range(MAX_EXCLUDED_NODES)]
    assert excluding(many, "new") == [*many[1:], "new"]
