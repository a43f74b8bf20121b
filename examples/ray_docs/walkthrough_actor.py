# Ray doc: "What is Ray Core?" (walkthrough) - Calling an Actor
import microray as ray

ray.init(num_cpus=2)


@ray.remote
class Counter:
    def __init__(self):
        self.i = 0

    def get(self):
        return self.i

    def incr(self, value):
        self.i += value


c = Counter.remote()
for _ in range(10):
    c.incr.remote(1)
print(ray.get(c.get.remote()))
assert ray.get(c.get.remote()) == 10
ray.shutdown()
