"""The owner's lineage bookkeeping (``microray.core.lineage``): what is kept, for how long,
within which bound, and what a lost object's owner does about it. No process, no clock."""

from __future__ import annotations

import pytest

from microray import ids
from microray.core.lineage import SPEC_OVERHEAD_BYTES, CannotRebuild, Lineage, Rebuild
from microray.core.task_spec import ACTOR_METHOD, ARG_REF, ARG_SERIALIZED, ARG_VALUE, DYNAMIC, TaskSpec
from microray.exceptions import (
    ObjectLostError,
    ObjectReconstructionFailedError,
    ObjectReconstructionFailedLineageEvictedError,
    ObjectReconstructionFailedMaxAttemptsExceededError,
)

WHERE = "its only copy was on node n1, which died"


def spec(*args, max_retries=3, num_returns=1, kind=0, name="f") -> TaskSpec:
    return TaskSpec(task_id=ids.new_task_id(), function_id=b"f" * 8, function_name=name, args=list(args),
                    max_retries=max_retries, num_returns=num_returns, kind=kind)


def ret(s: TaskSpec, i: int = 1) -> bytes:
    return ids.object_id(s.task_id, i)


def test_a_finished_task_is_kept_while_its_return_is_held_and_rebuilt_when_lost():
    lin = Lineage(max_bytes=1 << 20)
    a = spec((ARG_VALUE, 1))
    lin.record(a, ("key",), [ret(a)])
    plan = lin.plan(ret(a), WHERE)
    assert isinstance(plan, Rebuild)
    assert plan.spec is a and plan.key == ("key",) and plan.args == ()
    lin.released(ret(a))
    assert len(lin) == 0 and lin.bytes == 0
    gone = lin.plan(ret(a), WHERE)
    assert isinstance(gone, CannotRebuild)
    assert isinstance(gone.error, ObjectReconstructionFailedError)
    assert "kept no record" in str(gone.error) and ret(a).hex() in str(gone.error)


def test_an_entry_stays_until_every_return_is_released():
    lin = Lineage(1 << 20)
    a = spec(num_returns=2)
    lin.record(a, (), [ret(a, 1), ret(a, 2)])
    lin.released(ret(a, 1))
    assert isinstance(lin.plan(ret(a, 2), WHERE), Rebuild)
    lin.released(ret(a, 2))
    assert len(lin) == 0


def test_upstream_spec_is_kept_while_a_kept_downstream_task_takes_its_return():
    lin = Lineage(1 << 20)
    a = spec()
    lin.record(a, (), [ret(a)])
    b = spec((ARG_REF, ret(a), "owner"))
    lin.record(b, (), [ret(b)])
    # the user dropped a's ref: b may still need a rebuilt, so a's spec stays
    lin.released(ret(a))
    assert len(lin) == 2
    plan = lin.plan(ret(b), WHERE)
    assert isinstance(plan, Rebuild) and plan.args == (ret(a),)
    assert isinstance(lin.plan(ret(a), WHERE), Rebuild)
    # b goes: then a goes too (nothing needs it), recursively
    lin.released(ret(b))
    assert len(lin) == 0 and lin.bytes == 0


def test_put_objects_are_never_rebuilt_and_the_error_says_why():
    lin = Lineage(1 << 20)
    put_id = ids.object_id(ids.new_task_id(), 0)
    plan = lin.plan(put_id, WHERE)
    assert isinstance(plan, CannotRebuild) and type(plan.error) is ObjectLostError
    assert "created by put()" in str(plan.error) and "node n1" in str(plan.error)
    # a put object passed to a task is no upstream of it, and releasing it changes nothing
    b = spec((ARG_REF, put_id, "owner"))
    lin.record(b, (), [ret(b)])
    lin.released(put_id)
    assert lin.entries[b.task_id].upstream == ()


@pytest.mark.parametrize("kwargs, error, words", [
    ({"max_retries": 0}, ObjectReconstructionFailedMaxAttemptsExceededError, "max_retries=0"),
    ({"kind": ACTOR_METHOD}, ObjectReconstructionFailedError, "actor method"),
    ({"num_returns": DYNAMIC}, ObjectReconstructionFailedError, "generator"),
])
def test_tasks_that_cannot_run_again_keep_only_the_reason(kwargs, error, words):
    lin = Lineage(1 << 20)
    s = spec((ARG_SERIALIZED, b"x" * 1000), **kwargs)
    lin.record(s, (), [ret(s)])
    assert lin.bytes == 0  # no spec kept
    plan = lin.plan(ret(s), WHERE)
    assert isinstance(plan, CannotRebuild) and type(plan.error) is error
    assert words in str(plan.error) and WHERE in str(plan.error)


def test_a_rebuild_uses_up_a_retry_and_then_max_attempts_is_exceeded():
    lin = Lineage(1 << 20)
    s = spec(max_retries=1)
    lin.record(s, (), [ret(s)])
    assert isinstance(lin.plan(ret(s), WHERE), Rebuild)
    lin.started_rebuild(s.task_id)
    assert s.attempt == 1
    # the rebuild finished: recorded again, the entry stays the same
    lin.record(s, (), [ret(s)])
    assert len(lin) == 1
    plan = lin.plan(ret(s), WHERE)
    assert isinstance(plan, CannotRebuild)
    assert isinstance(plan.error, ObjectReconstructionFailedMaxAttemptsExceededError)
    assert "max_retries=1" in str(plan.error)


def test_memory_is_bounded_the_oldest_specs_go_first_and_say_so():
    per_spec = SPEC_OVERHEAD_BYTES + 1000
    lin = Lineage(max_bytes=3 * per_spec)
    specs = [spec((ARG_SERIALIZED, b"x" * 1000)) for _ in range(5)]
    for s in specs:
        lin.record(s, (), [ret(s)])
    assert lin.bytes <= 3 * per_spec
    assert lin.evictions == 2
    for old in specs[:2]:
        plan = lin.plan(ret(old), WHERE)
        assert isinstance(plan, CannotRebuild)
        assert isinstance(plan.error, ObjectReconstructionFailedLineageEvictedError)
        assert "max_lineage_bytes" in str(plan.error)
    for kept in specs[2:]:
        assert isinstance(lin.plan(ret(kept), WHERE), Rebuild)
    # evicted entries are forgotten with their returns like any other
    for s in specs:
        lin.released(ret(s))
    assert len(lin) == 0 and lin.bytes == 0


def test_zero_bound_keeps_nothing_rebuildable():
    lin = Lineage(max_bytes=0)
    s = spec()
    lin.record(s, (), [ret(s)])
    assert isinstance(lin.plan(ret(s), WHERE).error, ObjectReconstructionFailedLineageEvictedError)


def test_releasing_unknown_objects_changes_nothing():
    lin = Lineage(1 << 20)
    lin.released(ids.object_id(ids.new_task_id(), 1))
    lin.released(ids.object_id(ids.new_task_id(), 0))
    assert len(lin) == 0


def test_put_arguments_are_held_while_the_spec_is_kept_and_let_go_with_it():
    lin = Lineage(1 << 20)
    put_id = ids.object_id(ids.new_task_id(), 0)
    s = spec((ARG_REF, put_id, "owner"), (ARG_REF, put_id, "owner"))
    pin, unpin = lin.record(s, (), [ret(s)])
    assert pin == (put_id,) and unpin == []  # one hold, however often it is passed
    assert lin.record(s, (), [ret(s)]) == ((), [])  # recorded again: nothing more to hold
    assert lin.released(ret(s)) == [put_id]


def test_evicted_specs_let_go_of_their_put_arguments():
    lin = Lineage(max_bytes=SPEC_OVERHEAD_BYTES + 100)
    put_id = ids.object_id(ids.new_task_id(), 0)
    old = spec((ARG_REF, put_id, "owner"))
    assert lin.record(old, (), [ret(old)])[0] == (put_id,)
    new = spec((ARG_SERIALIZED, b"y" * 100))
    pin, unpin = lin.record(new, (), [ret(new)])
    assert pin == () and unpin == [put_id]
    assert lin.released(ret(old)) == []  # handed back once only
