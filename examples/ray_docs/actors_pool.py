# Ray doc: "Utility Classes" - ActorPool map / submit / get_next
import microray as ray
from microray.util import ActorPool

ray.init(num_cpus=2)


@ray.remote
class Actor:
    def double(self, v):
        return 2 * v


a1, a2 = Actor.remote(), Actor.remote()
pool = ActorPool([a1, a2])
print(list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])))
assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])) == [2, 4, 6, 8]
assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), [1, 2, 3, 4])) == [2, 4, 6, 8]
pool.submit(lambda a, v: a.double.remote(v), 1)
pool.submit(lambda a, v: a.double.remote(v), 2)
assert pool.get_next() == 2
assert pool.get_next() == 4
assert not pool.has_next()
ray.shutdown()
