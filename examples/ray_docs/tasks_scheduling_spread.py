# Ray doc: "Scheduling" - "SPREAD" and "DEFAULT" scheduling strategies
import microray as ray

ray.init(num_cpus=2)


@ray.remote
def func():
    return 1


@ray.remote(num_cpus=1)
class Actor:
    pass


assert ray.get(func.options(scheduling_strategy="DEFAULT").remote()) == 1
assert ray.get([func.options(scheduling_strategy="SPREAD").remote() for _ in range(4)]) == [1] * 4
actors = [Actor.options(scheduling_strategy="SPREAD").remote() for _ in range(2)]
print("ok")
ray.shutdown()
