# Ray doc: "Ray State API" - list_actors / list_tasks / summarize_tasks (Python SDK)
import time

import microray as ray
from microray.util.state import list_actors, list_objects, list_tasks, summarize_tasks

ray.init(num_cpus=2)


@ray.remote
class Actor:
    def ping(self):
        return 1


@ray.remote
def task_running_300_seconds():
    time.sleep(300)


actors = [Actor.remote() for _ in range(2)]
ray.get([a.ping.remote() for a in actors])
ref = task_running_300_seconds.remote()
obj = ray.put(1)
print(list_actors())
alive = list_actors(filters=[("state", "=", "ALIVE")])
assert len(alive) >= 2
assert all(a.state == "ALIVE" for a in alive)
print(list_tasks())
print(summarize_tasks())
print(list_objects())
ray.cancel(ref, force=True)
print("ok")
ray.shutdown()
