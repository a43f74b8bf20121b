"""Distributed reference counting, one borrowing path per test (Ray's ownership model).

Each test records the node store's used bytes first, builds a large object (in the
shared-memory store, not inline), hands it over along one path, drops the driver's
own ref, and then proves two things:

- the object stays readable, with the right bytes, while any holder remains (the
  task, actor or outer object that holds it reads it *after* the driver dropped its
  ref; a file gate orders that, no sleeps), and it is still counted in the store;
- once the last holder lets go, the store's used bytes come back to the baseline
  within a deadline (the object was deleted from the store, not merely forgotten).
"""

from __future__ import annotations

import gc
import os

import psutil
import pytest

import microray as ray

from .conftest import MB, store_used, wait_for, wait_used

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(120)

SIZE = 20 * MB  # well above max_inline_object_bytes: the value lives in the node's store


def big(fill: int) -> "np.ndarray":
    return np.full(SIZE, fill, dtype=np.uint8)


def check(value, fill: int) -> None:
    assert value.shape == (SIZE,) and value.dtype == np.uint8
    assert int(value[0]) == fill and int(value[-1]) == fill and int(value.sum()) == fill * SIZE


def assert_held(baseline: int, n_objects: int = 1) -> None:
    """The driver dropped its refs, but a holder remains: the bytes are still in the store."""
    gc.collect()
    assert store_used() >= baseline + n_objects * SIZE, (store_used(), baseline)


@ray.remote
def value_sum(x):
    return int(np.asarray(x).sum())


# -- a ref inside a put value ----------------------------------------------------------------
def test_ref_inside_put_value_keeps_inner_alive(cluster):
    baseline = store_used()
    inner = ray.put(big(3))
    outer = ray.put([inner, {"again": inner}])
    del inner
    assert_held(baseline)
    got = ray.get(outer)
    check(ray.get(got[0]), 3)
    assert got[1]["again"] == got[0]
    del got
    assert_held(baseline)  # the outer object still holds it
    del outer
    wait_used(baseline, what="inner object freed with the outer one")


def test_put_chain_two_levels_deep(cluster):
    baseline = store_used()
    a = ray.put(big(4))
    b = ray.put([a])
    c = ray.put([b])
    del a, b
    assert_held(baseline)
    (b2,) = ray.get(c)
    (a2,) = ray.get(b2)
    check(ray.get(a2), 4)
    del a2, b2
    assert_held(baseline)
    del c
    wait_used(baseline, what="a chain of contained refs freed from the top")


# -- a ref nested in a task argument --------------------------------------------------------
@ray.remote
def read_nested_after_gate(holder, gate):
    gate.wait()
    return int(ray.get(holder["ref"]).sum()), int(ray.get(holder["ref"])[0])


def test_ref_nested_in_task_argument(cluster, gate):
    baseline = store_used()
    ref = ray.put(big(5))
    result = read_nested_after_gate.remote({"ref": ref}, gate)
    del ref
    assert_held(baseline)
    gate.open()  # the task reads only now, after the driver's ref is gone
    assert ray.get(result, timeout=60) == (5 * SIZE, 5)
    del result
    wait_used(baseline, what="argument-held ref freed once the task ended")


# -- a ref stored in an actor ------------------------------------------------------------------
@ray.remote
class Holder:
    def __init__(self):
        self.refs = []

    def hold(self, refs):
        self.refs.extend(refs)
        return len(self.refs)

    def read(self):
        return [(int(ray.get(r)[0]), int(ray.get(r).sum())) for r in self.refs]

    def drop(self):
        self.refs.clear()
        gc.collect()
        return True

    def pid(self):
        return os.getpid()


def test_ref_stored_in_actor(cluster):
    baseline = store_used()
    holder = Holder.remote()
    ref = ray.put(big(6))
    assert ray.get(holder.hold.remote([ref])) == 1
    del ref
    assert_held(baseline)
    assert ray.get(holder.read.remote()) == [(6, 6 * SIZE)]  # read after the driver let go
    assert_held(baseline)
    assert ray.get(holder.drop.remote())
    wait_used(baseline, what="actor dropped the only remaining ref")
    ray.kill(holder)


# -- refs returned from tasks -------------------------------------------------------------------
@ray.remote
def make_owned_list(fill):
    return [ray.put(np.full(SIZE, fill, dtype=np.uint8))], os.getpid()


def test_worker_owned_ref_returned_in_a_list(cluster):
    baseline = store_used()
    refs, owner_pid = ray.get(make_owned_list.remote(7))
    assert owner_pid != os.getpid()
    assert refs[0].owner_address != ray.api._worker.address  # the worker owns it, we borrow
    assert_held(baseline)
    check(ray.get(refs[0]), 7)
    assert ray.get(value_sum.remote(refs[0])) == 7 * SIZE  # and a third process can read it
    del refs
    wait_used(baseline, what="the worker owner freed it when the driver stopped borrowing")


def test_borrowed_ref_in_local_store_passed_to_a_task_before_any_get(cluster):
    """The driver has not read the borrowed object yet; the task's argument is
    resolved from the node's store (regression: the task waited forever)."""
    baseline = store_used()
    refs, _pid = ray.get(make_owned_list.remote(12))
    assert ray.get(value_sum.remote(refs[0]), timeout=30) == 12 * SIZE
    assert ray.get([value_sum.remote(refs[0]) for _ in range(3)], timeout=30) == [12 * SIZE] * 3
    del refs
    wait_used(baseline, what="borrowed ref used as a task argument, then dropped")


@ray.remote
def give_back(refs):
    return refs


def test_driver_owned_ref_returned_back_to_the_driver(cluster):
    baseline = store_used()
    ref = ray.put(big(8))
    expected_id = ref.hex()
    result = give_back.remote([ref])
    del ref
    back = ray.get(result)
    del result
    assert back[0].hex() == expected_id and back[0].owner_address == ray.api._worker.address
    assert_held(baseline)
    check(ray.get(back[0]), 8)
    del back
    wait_used(baseline, what="own object handed back and dropped")


# -- a borrower passes the ref on to a third process --------------------------------------
@ray.remote
def read_after_gate(refs, gate):
    gate.wait()
    return int(ray.get(refs[0]).sum())


@ray.remote
def pass_on(refs, gate):
    # this worker borrows refs[0] and hands it, nested, to another task it owns
    return [read_after_gate.remote(refs, gate)]


def test_borrower_passes_ref_to_a_third_process(cluster, gate):
    baseline = store_used()
    ref = ray.put(big(9))
    (inner_result,) = ray.get(pass_on.remote([ref], gate))
    del ref
    assert_held(baseline)  # the middle task has ended; the reader task still holds it
    gate.open()
    assert ray.get(inner_result, timeout=60) == 9 * SIZE
    del inner_result
    wait_used(baseline, what="ref passed borrower -> third process, all released")


# -- refs inside generator items ---------------------------------------------------------------
@ray.remote
def produce(n):
    for i in range(n):
        yield {"i": i, "ref": ray.put(np.full(SIZE, 20 + i, dtype=np.uint8))}


def test_refs_inside_generator_items(cluster):
    baseline = store_used()
    items = [ray.get(item_ref) for item_ref in produce.remote(3)]
    gc.collect()
    assert_held(baseline, 3)  # the item refs are gone, the refs inside them are ours now
    for item in items:
        check(ray.get(item["ref"]), 20 + item["i"])
    # tasks take the borrowed refs as arguments (the objects are in this node's store)
    assert ray.get([value_sum.remote(item["ref"]) for item in items]) == [(20 + i) * SIZE for i in range(3)]
    del items, item  # (the loop variable holds the last item too)
    wait_used(baseline, what="generator item refs released")


def test_generator_item_refs_kept_by_the_item_object(cluster):
    baseline = store_used()
    gen = produce.remote(2)
    item_refs = list(gen)
    del gen
    assert_held(baseline, 2)
    first = ray.get(item_refs[0])
    check(ray.get(first["ref"]), 20)
    del first, item_refs  # the items' objects were the only holders
    wait_used(baseline, what="generator items and the refs inside them freed")


# -- the driver's own objects: plain local refs and task arguments --------------------------
def test_top_level_task_argument_held_until_task_ends(cluster, gate):
    baseline = store_used()
    ref = ray.put(big(11))

    @ray.remote
    def read_top_level(x, gate):
        gate.wait()
        return int(x.sum())

    result = read_top_level.remote(ref, gate)
    del ref
    assert_held(baseline)
    gate.open()
    assert ray.get(result, timeout=60) == 11 * SIZE
    del result
    wait_used(baseline, what="top-level argument freed once the task ended")


# -- the known limit ------------------------------------------------------------------------------
def test_borrower_actor_exiting_releases_its_borrow(cluster):
    baseline = store_used()
    holder = Holder.remote()
    pid = ray.get(holder.pid.remote())
    ref = ray.put(big(13))
    assert ray.get(holder.hold.remote([ref])) == 1
    del ref
    del holder  # the last handle: the actor is ended
    gc.collect()
    wait_for(lambda: not psutil.pid_exists(pid), timeout=15, what="the actor's process to exit")
    wait_used(baseline, timeout=5, what="object borrowed by an actor that exited")
