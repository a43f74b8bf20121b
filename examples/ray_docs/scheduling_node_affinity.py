# Ray doc: "Scheduling" - NodeAffinitySchedulingStrategy
import microray as ray
from microray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(num_cpus=2)


@ray.remote
def node_id():
    return ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=1)
class Actor:
    pass


target = ray.get_runtime_context().get_node_id()
ran_on = ray.get(
    node_id.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=target, soft=False)
    ).remote()
)
assert ran_on == target, (ran_on, target)
actor = Actor.options(
    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=target, soft=True)
).remote()
print("ok")
ray.shutdown()
