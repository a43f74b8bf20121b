# Ray doc: "Tasks" - remote function, parallel slow tasks, resources, passing refs
import time

import microray as ray

ray.init(num_cpus=2)


@ray.remote
def my_function():
    return 1


obj_ref = my_function.remote()
assert ray.get(obj_ref) == 1


@ray.remote
def slow_function():
    time.sleep(0.2)
    return 1


for _ in range(4):
    slow_function.remote()

# Specifying required resources.
assert ray.get(my_function.options(num_cpus=1).remote()) == 1


@ray.remote
def function_with_an_argument(value):
    return value + 1


obj_ref1 = my_function.remote()
assert ray.get(obj_ref1) == 1
obj_ref2 = function_with_an_argument.remote(obj_ref1)
assert ray.get(obj_ref2) == 2

# Waiting for partial results.
object_refs = [slow_function.remote() for _ in range(2)]
ready_refs, remaining_refs = ray.wait(object_refs, num_returns=1, timeout=None)
assert len(ready_refs) == 1 and len(remaining_refs) == 1
print("ok")
ray.shutdown()
