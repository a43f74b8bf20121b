"""Ray's documented recursive quicksort: a task splits a list, submits a nested task on
each half and ``get``s them one after the other, down to a size it sorts locally.

Each level of the recursion blocks a worker in ``get()`` twice in a row; the worker
lends its CPU back to the raylet while it waits, and the nested tasks run on the CPUs
lent that way. The raylet must see the blocked/unblocked notices in the order they were
sent, or it counts a waiting worker as running and the CPU it lent is gone: on one CPU,
one such worker leaves the nested tasks with no CPU and the program never ends.
"""

from __future__ import annotations

import random

import pytest

import microray as ray

pytestmark = pytest.mark.timeout(240)


def partition(collection):
    pivot = collection.pop()
    greater, lesser = [], []
    for element in collection:
        if element > pivot:
            greater.append(element)
        else:
            lesser.append(element)
    return lesser, pivot, greater


@ray.remote
def quick_sort_distributed(collection, local_below):
    if len(collection) <= local_below:
        return sorted(collection)
    lesser, pivot, greater = partition(collection)
    lesser = quick_sort_distributed.remote(lesser, local_below)
    greater = quick_sort_distributed.remote(greater, local_below)
    return ray.get(lesser) + [pivot] + ray.get(greater)


def run_sorts(sizes: list[int], local_below: int, timeout: float) -> None:
    rng = random.Random(1234)
    for size in sizes:
        unsorted = [rng.randint(0, 1_000_000) for _ in range(size)]
        result = ray.get(quick_sort_distributed.remote(unsorted, local_below), timeout=timeout)
        assert result == sorted(unsorted), f"the {size}-element list came back unsorted"


def test_recursive_quicksort_on_one_cpu(make_cluster):
    # about 30 tasks that split their list block twice each in get(); on one CPU a
    # single worker counted as running while it waits stops the whole program
    make_cluster(num_cpus=1)
    run_sorts([2_000, 50_000], local_below=2_000, timeout=90)


def test_recursive_quicksort_on_two_cpus(make_cluster):
    make_cluster(num_cpus=2)
    run_sorts([100_000], local_below=2_000, timeout=90)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_recursive_quicksort_documented_sizes(make_cluster):
    # the program as documented: 200,000 elements sorted locally, then 4M and 8M
    # (lists of tens of MB as arguments, in the object store; ~45 workers at once)
    make_cluster(num_cpus=2)
    run_sorts([200_000, 4_000_000, 8_000_000], local_below=200_000, timeout=600)
