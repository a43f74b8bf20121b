# Ray doc: "Ray Generators" - streaming generator tasks, next(), errors, actors
import time

import microray as ray

ray.init(num_cpus=2)


@ray.remote
def task():
    for i in range(5):
        time.sleep(0.01)
        yield i


gen = task.remote()
ref = next(gen)
assert ray.get(ref) == 0
assert [ray.get(r) for r in gen] == [1, 2, 3, 4]


@ray.remote
def task_error():
    for i in range(3):
        time.sleep(0.01)
        if i == 1:
            raise ValueError("error")
        yield i


gen = task_error.remote()
assert ray.get(next(gen)) == 0
try:
    ray.get(next(gen))
except ValueError as e:
    print(f"Exception is raised when i == 1 as expected {e}")
else:
    raise AssertionError


@ray.remote
class Actor:
    def f(self):
        for i in range(3):
            yield i


@ray.remote
class AsyncActor:
    async def f(self):
        for i in range(3):
            yield i


@ray.remote(max_concurrency=5)
class ThreadedActor:
    def f(self):
        for i in range(3):
            yield i


for cls in (Actor, AsyncActor, ThreadedActor):
    actor = cls.remote()
    assert [ray.get(r) for r in actor.f.remote()] == [0, 1, 2]
print("ok")
ray.shutdown()
