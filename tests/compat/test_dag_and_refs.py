"""``.bind()`` graphs (``microray.dag``) and the ObjectRef helpers Ray documents."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

import microray as ray
from microray.dag import InputNode, MultiOutputNode


@ray.remote
def add(a, b=0):
    return a + b


@ray.remote
def fail():
    raise ValueError("boom")


@ray.remote
class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, n):
        self.value += n
        return self.value


def test_bound_functions_run_only_on_execute(cluster):
    a = add.bind(1, b=2)
    assert ray.get(a.execute()) == 3
    b = add.bind(a, b=3)  # a node as an argument: its result is passed on
    assert ray.get(b.execute()) == 6
    c = add.bind(b, b=a)
    assert ray.get(c.execute()) == 9
    assert isinstance(c.execute(), ray.ObjectRef)


def test_input_node_takes_the_value_given_to_execute(cluster):
    with InputNode() as inp:
        dag = add.bind(add.bind(inp, 1), 10)
    assert ray.get(dag.execute(5)) == 16
    assert ray.get(dag.execute(100)) == 111  # a graph runs again with a new input
    with InputNode() as inp:
        dag = add.bind(inp[0], inp.b)
    assert ray.get(dag.execute(2, b=40)) == 42


def test_actor_class_and_methods_bind(cluster):
    counter = Counter.bind(10)
    dag = counter.add.bind(InputNode())
    assert ray.get(dag.execute(5)) == 15
    handle = Counter.remote(0)  # a method of an existing actor
    step = handle.add.bind(InputNode())
    assert ray.get(step.execute(2)) == 2
    assert ray.get(step.execute(3)) == 5  # the same actor, its state kept
    both = MultiOutputNode([add.bind(1, 1), handle.add.bind(10)])
    refs = both.execute()
    assert isinstance(refs, list) and ray.get(refs) == [2, 15]


def test_options_on_bound_function(cluster):
    dag = add.options(num_cpus=0.5).bind(20, 1)
    assert ray.get(dag.execute()) == 21
    assert ray.get(add.bind(20, 2).options(num_cpus=0.5).execute()) == 22
    with pytest.raises(ValueError):
        add.bind(1).options(num_cpus=-1).execute()  # options are checked as .options() checks them


def test_as_future_future_and_on_completed(cluster):
    ref = add.remote(1, 2)

    async def wait_async():
        return await ref.as_future()

    assert asyncio.run(wait_async()) == 3
    fut = add.remote(2, 2).future()
    assert isinstance(fut, concurrent.futures.Future) and fut.result(timeout=60) == 4

    got, done = [], threading.Event()
    add.remote(3, 3)._on_completed(lambda v: (got.append(v), done.set()))
    assert done.wait(60) and got == [6]
    got.clear(), done.clear()
    fail.remote()._on_completed(lambda v: (got.append(v), done.set()))
    assert done.wait(60)
    assert isinstance(got[0], ray.exceptions.RayTaskError) and isinstance(got[0], ValueError)


def test_placement_group_strategy_is_refused_at_submit(cluster):
    from microray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    strategy = PlacementGroupSchedulingStrategy(placement_group=object())
    with pytest.raises(NotImplementedError, match="does not support placement groups"):
        add.options(scheduling_strategy=strategy).remote(1, 1)
