# Ray doc: "Anti-pattern: Passing the same large argument by value repeatedly harms performance"
import numpy as np

import microray as ray

ray.init(num_cpus=2)


@ray.remote
def func(large_arg, i):
    return len(large_arg) + i


large_arg = np.zeros(1024 * 1024)
outputs = ray.get([func.remote(large_arg, i) for i in range(4)])
large_arg_ref = ray.put(large_arg)
outputs2 = ray.get([func.remote(large_arg_ref, i) for i in range(4)])
assert outputs == outputs2
print("ok")
ray.shutdown()
