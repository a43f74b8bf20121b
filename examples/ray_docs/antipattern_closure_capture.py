# Ray doc: "Anti-pattern: Closure capturing large objects harms performance"
import numpy as np

import microray as ray

ray.init(num_cpus=2)

large_object = np.zeros(1024 * 1024)


@ray.remote
def f1():
    return len(large_object)  # Captured by closure.


large_object_ref = ray.put(np.zeros(1024 * 1024))


@ray.remote
def f2(large_object):
    return len(large_object)


assert ray.get(f1.remote()) == ray.get(f2.remote(large_object_ref))


large_object_creator = lambda: np.zeros(1024 * 1024)  # noqa: E731


@ray.remote
def f3():
    large_object = large_object_creator()
    return len(large_object)


assert ray.get(f3.remote()) == 1024 * 1024
print("ok")
ray.shutdown()
