# Ray doc: "Tasks" - Multiple returns (num_returns, generator with num_returns)
import microray as ray

ray.init(num_cpus=2)


@ray.remote
def return_single():
    return 0, 1, 2


assert ray.get(return_single.remote()) == (0, 1, 2)


@ray.remote(num_returns=3)
def return_multiple():
    return 0, 1, 2


a, b, c = return_multiple.remote()
assert ray.get([a, b, c]) == [0, 1, 2]


@ray.remote(num_returns=3)
def return_multiple_as_generator():
    for i in range(3):
        yield i


a, b, c = return_multiple_as_generator.remote()
assert ray.get([a, b, c]) == [0, 1, 2]
print("ok")
ray.shutdown()
