# Ray doc: "Objects" - Passing object arguments (top-level vs nested refs)
import microray as ray

ray.init(num_cpus=2)


@ray.remote
def echo(a: int, b: int, c: int):
    return a, b, c


a, b, c = ray.put(1), ray.put(2), ray.put(3)
# Top-level refs are resolved before the task runs.
assert ray.get(echo.remote(a, b, c)) == (1, 2, 3)


@ray.remote
def echo_and_get(x_list):
    print("args:", x_list)
    return ray.get(x_list)


# Nested refs arrive as refs.
assert ray.get(echo_and_get.remote([a, b, c])) == [1, 2, 3]
print("ok")
ray.shutdown()
