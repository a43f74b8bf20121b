# Ray doc: "Ray Generators" - ray.wait on generators and async iteration
import asyncio

import microray as ray

ray.init(num_cpus=2)


@ray.remote
def task():
    for i in range(3):
        yield i


gen = task.remote()
ready, unready = ray.wait([gen], timeout=5)
assert ready == [gen]
seen = []
while True:
    ready, _ = ray.wait([gen], timeout=5)
    if not ready:
        continue
    try:
        seen.append(ray.get(next(gen)))
    except StopIteration:
        break
assert seen == [0, 1, 2], seen


async def main():
    out = []
    async for ref in task.remote():
        out.append(await ref)
    return out


assert asyncio.run(main()) == [0, 1, 2]


@ray.remote
def consume(values):
    return sum(values)


# Pass a generator's refs to another task.
refs = list(task.remote())
assert ray.get(consume.remote(ray.get(refs))) == 3
print("ok")
ray.shutdown()
