# Ray doc: "Pattern: Using asyncio to run actor methods concurrently"
import asyncio

import microray as ray

ray.init(num_cpus=2)


@ray.remote
class TaskStore:
    def get_next_task(self):
        return "task"


@ray.remote
class AsyncTaskExecutor:
    def __init__(self, task_store):
        self.task_store = task_store
        self.num_executed_tasks = 0

    async def run(self):
        for _ in range(3):
            # Await the remote call instead of blocking with ray.get.
            task = await self.task_store.get_next_task.remote()
            await asyncio.sleep(0.01)
            self.num_executed_tasks += 1

    def get_num_executed_tasks(self):
        return self.num_executed_tasks


store = TaskStore.remote()
executor = AsyncTaskExecutor.remote(store)
executor.run.remote()
# Not blocked while run() is awaiting.
n = ray.get(executor.get_num_executed_tasks.remote())
assert 0 <= n <= 3
ray.get(executor.run.remote())
assert ray.get(executor.get_num_executed_tasks.remote()) >= 3
print("ok")
ray.shutdown()
