# Ray doc: "What is Ray Core?" (walkthrough) - Passing Objects
import numpy as np

import microray as ray

ray.init(num_cpus=2)


@ray.remote
def sum_matrix(matrix):
    return np.sum(matrix)


print(ray.get(sum_matrix.remote(np.ones((100, 100)))))
matrix_ref = ray.put(np.ones((1000, 1000)))
result = ray.get(sum_matrix.remote(matrix_ref))
print(result)
assert result == 1000000.0
ray.shutdown()
