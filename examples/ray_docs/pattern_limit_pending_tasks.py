# Ray doc: "Pattern: Using ray.wait to limit the number of pending tasks"
import microray as ray

ray.init(num_cpus=2)


@ray.remote
class Actor:
    async def heavy_compute(self):
        return 1


actor = Actor.remote()
NUM_TASKS = 200
result_refs = []
MAX_NUM_PENDING_TASKS = 10
done = 0
for _ in range(NUM_TASKS):
    if len(result_refs) > MAX_NUM_PENDING_TASKS:
        ready_refs, result_refs = ray.wait(result_refs, num_returns=1)
        done += sum(ray.get(ready_refs))
    result_refs.append(actor.heavy_compute.remote())
done += sum(ray.get(result_refs))
assert done == NUM_TASKS
print("ok")
ray.shutdown()
