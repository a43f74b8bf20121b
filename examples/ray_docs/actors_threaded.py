# Ray doc: "AsyncIO / Concurrency for Actors" - threaded actors (max_concurrency)
import time

import microray as ray

ray.init(num_cpus=2)


@ray.remote
class ThreadedActor:
    def task_1(self):
        time.sleep(0.2)
        return 1

    def task_2(self):
        time.sleep(0.2)
        return 2


a = ThreadedActor.options(max_concurrency=2).remote()
assert ray.get([a.task_1.remote(), a.task_2.remote()]) == [1, 2]
print("ok")
ray.shutdown()
