# Ray doc: "Utility Classes" - ray.util.queue.Queue shared by driver and tasks
import microray as ray
from microray.util.queue import Empty, Queue

ray.init(num_cpus=2)
queue = Queue(maxsize=100)


@ray.remote
def consumer(id, queue):
    next_item = queue.get(block=True, timeout=5)
    return f"consumer {id} got work {next_item}"


consumers = [consumer.remote(id, queue) for id in range(2)]
[queue.put(i) for i in range(2)]
for out in ray.get(consumers):
    print(out)
assert queue.empty()
try:
    queue.get(block=False)
except Empty:
    pass
queue.put_nowait_batch([1, 2, 3])
assert queue.size() == 3 and queue.get_nowait_batch(3) == [1, 2, 3]
ray.shutdown()
