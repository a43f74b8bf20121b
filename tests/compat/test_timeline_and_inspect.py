"""``ray.timeline()`` and ``ray.util.inspect_serializability`` as Ray documents them.

``timeline()`` returns the task history as Chrome trace events, with the tasks that
ended just before the call, or writes them to a file as one JSON list and returns None;
it needs a connected process. ``inspect_serializability`` returns ``(ok, failures)``:
the failing global, closure variable or attribute, found down to ``depth`` levels."""

from __future__ import annotations

import io
import json
import threading

import pytest

import microray as ray
from microray.testing.processes import wait_for
from microray.util import deregister_serializer, inspect_serializability, register_serializer
from microray.util.check_serialize import FailureTuple

DEADLINE = 60


@ray.remote
def traced(x):
    return x


@ray.remote
def traced_failure():
    raise ValueError("for the timeline")


@ray.remote
def submits_inner():
    return ray.get(traced.options(name="inner_task").remote(1))


def _by_task(events):
    return {e["args"]["task_id"]: e for e in events}


# -- timeline ----------------------------------------------------------------------------------
def test_timeline_has_the_tasks_that_just_ended(cluster):
    refs = [traced.remote(i) for i in range(3)]
    failing = traced_failure.remote()
    assert ray.get(refs, timeout=DEADLINE) == [0, 1, 2]
    with pytest.raises(ValueError):
        ray.get(failing, timeout=DEADLINE)
    events = ray.timeline()  # at once: the driver's task events are sent before it reads
    by_task = _by_task(events)
    for ref in refs:
        event = by_task[ref.task_id().hex()]
        assert event["name"] == "traced" and event["args"]["state"] == "FINISHED"
        assert event["ph"] == "X" and event["dur"] >= 0 and event["ts"] > 0
        assert event["pid"].startswith("node ") and event["tid"].startswith("worker ")
    assert by_task[failing.task_id().hex()]["args"]["state"] == "FAILED"
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)


def test_timeline_writes_a_json_list_to_a_file(cluster, tmp_path):
    ref = traced.remote("to a file")
    ray.get(ref, timeout=DEADLINE)
    path = tmp_path / "timeline.json"
    assert ray.timeline(filename=str(path)) is None
    written = json.loads(path.read_text())
    assert isinstance(written, list)
    assert _by_task(written)[ref.task_id().hex()]["name"] == "traced"


def test_timeline_has_tasks_that_tasks_submitted(cluster):
    assert ray.get(submits_inner.remote(), timeout=DEADLINE) == 1

    def inner_names():
        return [e for e in ray.timeline() if e["name"] == "inner_task"]

    # a worker's task events reach the GCS within its report period
    assert wait_for(inner_names, timeout=DEADLINE, what="the nested task in the timeline")


def test_timeline_needs_a_connected_process(no_cluster):
    assert "timeline" in dir(ray)
    with pytest.raises(RuntimeError, match="not initialized"):
        ray.timeline()


# -- inspect_serializability ---------------------------------------------------------------------
LOCK = threading.Lock()

# a function of a script (not of an importable module), so that it is pickled by value,
# globals and all, as the functions of a driver script are
_SCRIPT = {"__name__": "a_driver_script", "LOCK": LOCK}
exec("def uses_a_global_lock():\n    return LOCK\n", _SCRIPT)
uses_a_global_lock = _SCRIPT["uses_a_global_lock"]


def make_closure():
    lock = threading.Lock()
    label = "fine"

    def uses_a_closure_lock():
        return label, lock

    return uses_a_closure_lock


class Inner:
    def __init__(self):
        self.number = 1
        self.lock = threading.Lock()


class Outer:
    def __init__(self):
        self.text = "fine"
        self.inner = Inner()


def _only(failures):
    assert len(failures) == 1
    failure = next(iter(failures))
    assert isinstance(failure, FailureTuple)
    return failure


def test_a_serializable_object_has_no_failures():
    out = io.StringIO()
    assert inspect_serializability(lambda x: x + 1, name="f", print_file=out) == (True, set())
    assert "Checking Serializability of" in out.getvalue() and "FAIL" not in out.getvalue()


def test_a_global_that_fails_is_named():
    out = io.StringIO()
    ok, failures = inspect_serializability(uses_a_global_lock, name="uses_a_global_lock", print_file=out)
    assert ok is False
    failure = _only(failures)
    assert failure.obj is LOCK and failure.name == "LOCK" and failure.parent is uses_a_global_lock
    assert failure.path == ("uses_a_global_lock", "LOCK")
    text = out.getvalue()
    assert "Detected 1 global variables" in text and "Serializing 'LOCK'" in text
    assert "!!! FAIL serialization: cannot pickle '_thread.lock' object" in text
    assert "was found to be non-serializable" in text


def test_a_closure_variable_that_fails_is_named():
    fn = make_closure()
    ok, failures = inspect_serializability(fn, print_file=io.StringIO())
    failure = _only(failures)
    assert ok is False and failure.name == "lock" and failure.parent is fn
    assert isinstance(failure.obj, type(LOCK))


def test_attributes_are_followed_down_to_depth():
    obj = Outer()
    ok, failures = inspect_serializability(obj, name="obj", print_file=io.StringIO())
    failure = _only(failures)
    assert ok is False and failure.obj is obj.inner.lock and failure.parent is obj.inner
    assert failure.path == ("obj", "inner", "lock")
    # one level only: the attribute that holds the lock is as far as it looks
    _, failures = inspect_serializability(obj, name="obj", depth=1, print_file=io.StringIO())
    failure = _only(failures)
    assert failure.obj is obj.inner and failure.name == "inner" and failure.parent is obj
    # depth 0: the object itself
    _, failures = inspect_serializability(obj, name="obj", depth=0, print_file=io.StringIO())
    failure = _only(failures)
    assert failure.obj is obj and failure.parent is None


def test_a_registered_serializer_makes_it_serializable():
    register_serializer(Inner, serializer=lambda inner: inner.number, deserializer=lambda n: n)
    try:
        assert inspect_serializability(Outer(), print_file=io.StringIO()) == (True, set())
    finally:
        deregister_serializer(Inner)
    assert inspect_serializability(Outer(), print_file=io.StringIO())[0] is False


def test_it_is_in_ray_util():
    assert ray.util.inspect_serializability is inspect_serializability
    assert ray.util.check_serialize.inspect_serializability is inspect_serializability
