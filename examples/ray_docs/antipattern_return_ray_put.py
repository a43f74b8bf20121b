# Ray doc: "Anti-pattern: Returning ray.put() ObjectRefs from a task harms performance and fault tolerance"
import numpy as np

import microray as ray

ray.init(num_cpus=2)


@ray.remote
def task_with_single_small_return_value_bad():
    small_return_value = 1
    small_return_value_ref = ray.put(small_return_value)
    return small_return_value_ref


@ray.remote
def task_with_single_small_return_value_good():
    return 1


assert ray.get(ray.get(task_with_single_small_return_value_bad.remote())) == ray.get(
    task_with_single_small_return_value_good.remote())


@ray.remote
def task_with_single_large_return_value_bad():
    large_return_value = np.zeros(10 * 1024 * 1024)
    large_return_value_ref = ray.put(large_return_value)
    return large_return_value_ref


@ray.remote
def task_with_single_large_return_value_good():
    return np.zeros(10 * 1024 * 1024)


assert np.array_equal(
    ray.get(ray.get(task_with_single_large_return_value_bad.remote())),
    ray.get(task_with_single_large_return_value_good.remote()))


@ray.remote(num_returns=3)
def task_with_static_multiple_returns_good(num_returns):
    return_values = []
    for _ in range(num_returns):
        return_values.append(1)
    return tuple(return_values)


assert ray.get(list(task_with_static_multiple_returns_good.remote(3))) == [1, 1, 1]


@ray.remote(num_returns="dynamic")
def task_with_dynamic_returns_good(num_returns):
    for _ in range(num_returns):
        yield np.zeros(1024)


dynamic_refs = ray.get(task_with_dynamic_returns_good.remote(3))
assert len([ray.get(r) for r in dynamic_refs]) == 3
print("ok")
ray.shutdown()
