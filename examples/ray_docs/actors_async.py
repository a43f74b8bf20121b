# Ray doc: "AsyncIO / Concurrency for Actors" - async actor, await refs, max_concurrency
import asyncio

import microray as ray

ray.init(num_cpus=2)


@ray.remote
class AsyncActor:
    async def run_concurrent(self):
        print("started")
        await asyncio.sleep(0.3)
        print("finished")
        return 1


actor = AsyncActor.remote()
# All 4 run concurrently: total time about one sleep.
assert ray.get([actor.run_concurrent.remote() for _ in range(4)]) == [1] * 4


@ray.remote
def some_task():
    return 1


async def await_obj_ref():
    await some_task.remote()
    await asyncio.wait([asyncio.ensure_future(some_task.remote())])
    return await asyncio.wrap_future(some_task.remote().future())


assert asyncio.run(await_obj_ref()) == 1

actor2 = AsyncActor.options(max_concurrency=2).remote()
assert ray.get([actor2.run_concurrent.remote() for _ in range(4)]) == [1] * 4


@ray.remote
class AsyncActor2:
    async def run_task(self):
        # Await refs inside an async actor.
        return await some_task.remote()


assert ray.get(AsyncActor2.remote().run_task.remote()) == 1
print("ok")
ray.shutdown()
