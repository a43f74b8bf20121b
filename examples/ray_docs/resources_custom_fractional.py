# Ray doc: "Resources" - custom resources and fractional resource requirements
import microray as ray

ray.init(num_cpus=2, num_gpus=1, resources={"special_hardware": 1, "Custom": 2})


@ray.remote(resources={"special_hardware": 1})
def special():
    return "special"


@ray.remote(num_cpus=0.5)
def half_cpu():
    return 0.5


@ray.remote(num_gpus=0.5)
class FractionalGPUActor:
    def ping(self):
        return ray.get_runtime_context().get_assigned_resources()


assert ray.get(special.remote()) == "special"
assert ray.get([half_cpu.remote() for _ in range(4)]) == [0.5] * 4
a = FractionalGPUActor.remote()
print(ray.get(a.ping.remote()))
assert ray.get(half_cpu.options(num_cpus=0.5, resources={"Custom": 0.5}).remote()) == 0.5
print(ray.cluster_resources())
assert ray.cluster_resources()["special_hardware"] == 1
ray.shutdown()
