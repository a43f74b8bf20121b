# Ray doc: "Pattern: Using pipelining to increase throughput"
from collections import deque

import microray as ray

ray.init(num_cpus=2)


@ray.remote
class WorkQueue:
    def __init__(self):
        self.queue = deque(range(20))

    def get_work_item(self):
        if self.queue:
            return self.queue.popleft()
        return None


@ray.remote
class WorkerWithPipelining:
    def __init__(self, work_queue):
        self.work_queue = work_queue
        self.processed = 0

    def process(self, work_item):
        self.processed += 1

    def run(self):
        self.work_item_ref = self.work_queue.get_work_item.remote()
        while True:
            work_item = ray.get(self.work_item_ref)
            if work_item is None:
                break
            # Fetch the next item while processing this one.
            self.work_item_ref = self.work_queue.get_work_item.remote()
            self.process(work_item)
        return self.processed


q = WorkQueue.remote()
w = WorkerWithPipelining.remote(q)
assert ray.get(w.run.remote()) == 20
print("ok")
ray.shutdown()
