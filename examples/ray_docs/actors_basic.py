# Ray doc: "Actors" - create, call, resources, passing handles
import time

import microray as ray

ray.init(num_cpus=2)


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value

    def get_counter(self):
        return self.value


counter = Counter.remote()
obj_ref = counter.increment.remote()
assert ray.get(obj_ref) == 1

counters = [Counter.remote() for _ in range(3)]
results = ray.get([c.increment.remote() for c in counters])
assert results == [1, 1, 1]
results = ray.get([counters[0].increment.remote() for _ in range(5)])
assert results == [2, 3, 4, 5, 6]

# Specifying required resources.
actor = Counter.options(num_cpus=1).remote()


@ray.remote
def f(counter):
    for _ in range(3):
        time.sleep(0.01)
        counter.increment.remote()


c2 = Counter.remote()
ray.get([f.remote(c2) for _ in range(2)])
deadline = time.time() + 10
while ray.get(c2.get_counter.remote()) < 6 and time.time() < deadline:
    time.sleep(0.05)
assert ray.get(c2.get_counter.remote()) == 6
print("ok")
ray.shutdown()
