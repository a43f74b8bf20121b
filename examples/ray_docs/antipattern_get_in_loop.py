# Ray doc: "Anti-pattern: Calling ray.get in a loop harms parallelism"
import microray as ray

ray.init(num_cpus=2)


@ray.remote
def f(i):
    return i


# Anti-pattern: no parallelism due to calling ray.get inside of the loop.
sequential_returns = []
for i in range(20):
    sequential_returns.append(ray.get(f.remote(i)))

# Better approach: parallelism because the tasks are executed in parallel.
refs = []
for i in range(20):
    refs.append(f.remote(i))
parallel_returns = ray.get(refs)
assert sequential_returns == parallel_returns == list(range(20))
print("ok")
ray.shutdown()
