# Ray doc: "Objects" - ray.put / ray.get, get with timeout, nested objects
import time

import microray as ray
from microray.exceptions import GetTimeoutError

ray.init(num_cpus=2)

y = 1
object_ref = ray.put(y)
assert ray.get(object_ref) == 1
object_refs = [ray.put(i) for i in range(3)]
assert ray.get(object_refs) == [0, 1, 2]


@ray.remote
def long_running_function():
    time.sleep(8)


obj_ref = long_running_function.remote()
try:
    ray.get(obj_ref, timeout=0.5)
except GetTimeoutError:
    print("`get` timed out.")
else:
    raise AssertionError("expected GetTimeoutError")
ray.cancel(obj_ref, force=True)

# Objects containing refs.
x_id = ray.put("x")
y_id = ray.put([x_id])
assert ray.get(ray.get(y_id)[0]) == "x"
ray.shutdown()
