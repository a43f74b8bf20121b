# Ray doc: "Nested Remote Functions" - tasks submitting tasks
import microray as ray

ray.init(num_cpus=2)


@ray.remote
def f():
    return 1


@ray.remote
def g():
    # Call f 4 times and return the resulting object refs.
    return [f.remote() for _ in range(4)]


@ray.remote
def h():
    # Call f 4 times, block until those 4 tasks finish,
    # retrieve the results, and return the values.
    return ray.get([f.remote() for _ in range(4)])


refs = ray.get(g.remote())
assert ray.get(refs) == [1, 1, 1, 1]
assert ray.get(h.remote()) == [1, 1, 1, 1]
print("ok")
ray.shutdown()
