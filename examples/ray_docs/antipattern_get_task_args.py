# Ray doc: "Anti-pattern: Calling ray.get on task arguments harms performance"
import numpy as np

import microray as ray

ray.init(num_cpus=2)


@ray.remote
def generate_rollout():
    return np.ones((1000, 100))


@ray.remote
def reduce(rollout):
    return np.sum(rollout)


@ray.remote
def reduce_bad(rollout_refs):
    return np.sum(ray.get(rollout_refs[0]))


rollout_obj_ref = generate_rollout.remote()
good = ray.get(reduce.remote(rollout_obj_ref))
bad = ray.get(reduce_bad.remote([generate_rollout.remote()]))
assert good == bad == 100000.0
print("ok")
ray.shutdown()
