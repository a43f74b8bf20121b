# Ray doc: "What is Ray Core?" (walkthrough) - Running a Task
import microray as ray

ray.init(num_cpus=2)


@ray.remote
def square(x):
    return x * x


futures = [square.remote(i) for i in range(4)]
print(ray.get(futures))
assert ray.get(futures) == [0, 1, 4, 9]
ray.shutdown()
