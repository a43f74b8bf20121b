# Ray doc: "Actor Fault Tolerance" - max_restarts and max_task_retries
import os

import microray as ray

ray.init(num_cpus=2)


@ray.remote(max_restarts=4, max_task_retries=-1)
class Actor:
    def __init__(self):
        self.counter = 0

    def increment_and_possibly_fail(self):
        if self.counter == 5:
            os._exit(0)
        self.counter += 1
        return self.counter


actor = Actor.remote()
results = []
for _ in range(10):
    results.append(ray.get(actor.increment_and_possibly_fail.remote()))
print(results)
# State is lost on restart: the counter starts over after the crash.
assert results == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]
print("ok")
ray.shutdown()
