# Ray doc: "Pattern: Using resources to limit the number of concurrently running tasks"
import microray as ray

ray.init(num_cpus=2, resources={"memory_unit": 2})


@ray.remote(memory=1)
def process(file):
    return len(file)


@ray.remote(resources={"memory_unit": 1})
def process2(file):
    return len(file)


files = ["a", "bb", "ccc", "dddd"]
assert sum(ray.get([process.remote(f) for f in files])) == 10
assert sum(ray.get([process2.remote(f) for f in files])) == 10
print("ok")
ray.shutdown()
