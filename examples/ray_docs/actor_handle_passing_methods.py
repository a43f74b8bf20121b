# Ray doc: "Actors" - ray.method(num_returns), actor handles in tasks, get_actor from a task
import microray as ray

ray.init(num_cpus=2)


@ray.remote
class Foo:
    @ray.method(num_returns=2)
    def bar(self):
        return 1, 2


f = Foo.remote()
obj_ref1, obj_ref2 = f.bar.remote()
assert ray.get(obj_ref1) == 1 and ray.get(obj_ref2) == 2


@ray.remote
class Store:
    def __init__(self):
        self.d = {}

    def put(self, k, v):
        self.d[k] = v

    def get(self, k):
        return self.d.get(k)


store = Store.options(name="store").remote()


@ray.remote
def writer(k, v):
    s = ray.get_actor("store")
    ray.get(s.put.remote(k, v))


ray.get([writer.remote(i, i * i) for i in range(3)])
assert ray.get(store.get.remote(2)) == 4
print("ok")
ray.shutdown()
