# Ray doc: "Pattern: Using nested tasks to achieve nested parallelism" (quicksort)
import random

import microray as ray

ray.init(num_cpus=2)


def partition(collection):
    pivot = collection.pop()
    greater, lesser = [], []
    for element in collection:
        if element > pivot:
            greater.append(element)
        else:
            lesser.append(element)
    return lesser, pivot, greater


def quick_sort(collection):
    if len(collection) <= 200:
        return sorted(collection)
    lesser, pivot, greater = partition(collection)
    return quick_sort(lesser) + [pivot] + quick_sort(greater)


@ray.remote
def quick_sort_distributed(collection):
    # Tiny tasks are an antipattern; below the threshold sort locally.
    if len(collection) <= 2000:
        return sorted(collection)
    lesser, pivot, greater = partition(collection)
    lesser = quick_sort_distributed.remote(lesser)
    greater = quick_sort_distributed.remote(greater)
    return ray.get(lesser) + [pivot] + ray.get(greater)


unsorted = [random.randint(0, 10**6) for _ in range(20000)]
assert quick_sort(list(unsorted)) == sorted(unsorted)
assert ray.get(quick_sort_distributed.remote(list(unsorted))) == sorted(unsorted)
print("ok")
ray.shutdown()
