# Ray doc: "Limiting Concurrency Per-Method with Concurrency Groups"
import asyncio

import microray as ray

ray.init(num_cpus=2)


@ray.remote(concurrency_groups={"io": 2, "compute": 4})
class AsyncIOActor:
    def __init__(self):
        pass

    @ray.method(concurrency_group="io")
    async def f1(self):
        await asyncio.sleep(0.01)
        return "f1"

    @ray.method(concurrency_group="io")
    async def f2(self):
        return "f2"

    @ray.method(concurrency_group="compute")
    async def f3(self):
        return "f3"

    async def f5(self):
        return "f5"


a = AsyncIOActor.remote()
assert ray.get([a.f1.remote(), a.f2.remote(), a.f3.remote(), a.f5.remote()]) == ["f1", "f2", "f3", "f5"]
assert ray.get(a.f5.options(concurrency_group="compute").remote()) == "f5"
print("ok")
ray.shutdown()
