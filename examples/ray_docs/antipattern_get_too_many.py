# Ray doc: "Anti-pattern: Fetching too many objects at once with ray.get causes failure"
import numpy as np

import microray as ray

ray.init(num_cpus=2)


def process_results(results):
    return sum(r.size for r in results)


@ray.remote
def return_big_object():
    return np.zeros(1024 * 100)


NUM_TASKS = 40
object_refs = [return_big_object.remote() for _ in range(NUM_TASKS)]
# Better approach: fetch in batches.
BATCH_SIZE = 10
total = 0
while object_refs:
    ready_object_refs, object_refs = ray.wait(object_refs, num_returns=min(BATCH_SIZE, len(object_refs)))
    total += process_results(ray.get(ready_object_refs))
assert total == NUM_TASKS * 1024 * 100
print("ok")
ray.shutdown()
