# Ray doc: "Anti-pattern: Calling ray.get unnecessarily harms performance"
import numpy as np

import microray as ray

ray.init(num_cpus=2)


@ray.remote
def generate_rollout():
    return np.ones((1000, 100))


@ray.remote
def reduce(rollout):
    return np.sum(rollout)


# Anti-pattern: the rollout is pulled into the driver then shipped back.
rollout = ray.get(generate_rollout.remote())
reduced = ray.get(reduce.remote(rollout))
# Better approach: pass the ref.
rollout_obj_ref = generate_rollout.remote()
reduced2 = ray.get(reduce.remote(rollout_obj_ref))
assert reduced == reduced2 == 100000.0
print("ok")
ray.shutdown()
