"""Points found by running Ray's documentation examples: ``ray.wait`` on streaming
generators (ready once ``next()`` would not block), ``ray.dag.input_node`` /
``ray.dag.output_node`` as import paths, and ``ray.util.register_serializer`` /
``deregister_serializer``."""

from __future__ import annotations

import threading

import pytest

import microray as ray
from microray.exceptions import SerializationError

DEADLINE = 60


@ray.remote
def gated(n, signal):
    """Yields ``n`` values, the second and later only once ``signal`` is released."""
    for i in range(n):
        if i == 1:
            while not ray.get(signal.is_set.remote()):
                ray.get(signal.wait_briefly.remote())
        yield i


@ray.remote(num_cpus=0)
class Signal:
    def __init__(self):
        self.event = threading.Event()

    def set(self):
        self.event.set()

    def is_set(self):
        return self.event.is_set()

    def wait_briefly(self):
        self.event.wait(0.05)


def test_wait_on_a_generator_is_ready_only_when_its_next_item_is(cluster):
    signal = Signal.remote()
    gen = gated.remote(2, signal)
    ready, not_ready = ray.wait([gen], timeout=DEADLINE)
    assert ready == [gen] and not_ready == []
    assert ray.get(next(gen)) == 0
    # the second item waits for the signal: the generator is not ready now
    ready, not_ready = ray.wait([gen], timeout=0.2)
    assert ready == [] and not_ready == [gen]
    ray.get(signal.set.remote())
    ready, _ = ray.wait([gen], timeout=DEADLINE)
    assert ready == [gen]
    assert ray.get(next(gen)) == 1
    # the task ended: ready (next() raises StopIteration at once)
    ready, _ = ray.wait([gen], timeout=DEADLINE)
    assert ready == [gen]
    with pytest.raises(StopIteration):
        next(gen)
    ready, _ = ray.wait([gen], timeout=DEADLINE)
    assert ready == [gen]


def test_wait_mixes_refs_and_generators_in_input_order(cluster):
    signal = Signal.remote()
    gen = gated.remote(2, signal)
    assert ray.get(next(gen)) == 0  # the next item is blocked on the signal
    ref = ray.put(1)
    ready, not_ready = ray.wait([gen, ref], num_returns=1, timeout=DEADLINE)
    assert ready == [ref] and not_ready == [gen]
    ready, not_ready = ray.wait([gen, ref], num_returns=2, timeout=0.2)
    assert ready == [ref] and not_ready == [gen]
    ray.get(signal.set.remote())
    ready, not_ready = ray.wait([gen, ref], num_returns=2, timeout=DEADLINE)
    assert ready == [gen, ref] and not_ready == []
    assert [ray.get(r) for r in gen] == [1]


def test_wait_still_refuses_other_things(cluster):
    with pytest.raises(TypeError, match="ObjectRefGenerators"):
        ray.wait([1])


@ray.remote
def plus(x, y):
    return x + y


def test_dag_import_paths_of_rays_documentation(cluster):
    from microray.dag.input_node import InputNode
    from microray.dag.output_node import MultiOutputNode

    with InputNode() as inp:
        dag = MultiOutputNode([plus.bind(inp, 1), plus.bind(inp, 2)])
    assert ray.get(dag.execute(10), timeout=DEADLINE) == [11, 12]


class Unpicklable:
    def __init__(self, x):
        self.x = x
        self.lock = threading.Lock()


@ray.remote
def read_x(obj):
    return obj.x, type(obj.lock).__name__


def test_register_serializer_applies_to_puts_and_arguments_until_deregistered(cluster):
    with pytest.raises(SerializationError):
        ray.put(Unpicklable(1))
    ray.util.register_serializer(Unpicklable, serializer=lambda o: o.x, deserializer=Unpicklable)
    try:
        assert ray.get(ray.put(Unpicklable(5)), timeout=DEADLINE).x == 5
        # the worker has registered nothing: the deserializer travels with the value
        assert ray.get(read_x.remote(Unpicklable(7)), timeout=DEADLINE) == (7, "lock")
    finally:
        ray.util.deregister_serializer(Unpicklable)
    with pytest.raises(SerializationError):
        ray.put(Unpicklable(1))
    ray.util.deregister_serializer(Unpicklable)  # twice: no error


def test_register_serializer_checks_its_arguments():
    with pytest.raises(TypeError, match="expects a class"):
        ray.util.register_serializer(Unpicklable(1), serializer=str, deserializer=str)
    with pytest.raises(TypeError, match="callables"):
        ray.util.register_serializer(Unpicklable, serializer=None, deserializer=str)


@ray.remote
class Named:
    def ping(self):
        return 1


def test_state_rows_read_as_attributes_and_as_dicts(cluster):
    from microray.util.state import get_actor, list_actors

    a = Named.options(name="state_row_actor").remote()
    ray.get(a.ping.remote(), timeout=DEADLINE)
    rows = [r for r in list_actors(filters=[("state", "=", "ALIVE")]) if r.name == "state_row_actor"]
    assert len(rows) == 1
    row = rows[0]
    assert row.state == row["state"] == "ALIVE" and row.class_name == "Named"
    assert get_actor(row.actor_id).name == "state_row_actor"
    with pytest.raises(AttributeError, match="no column 'nope'"):
        row.nope
    ray.kill(a)
