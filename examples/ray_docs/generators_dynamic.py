# Ray doc: "Dynamic generators" - num_returns="dynamic"
import numpy as np

import microray as ray

ray.init(num_cpus=2)


@ray.remote(num_returns="dynamic")
def split(array, chunk_size):
    while len(array) > 0:
        yield array[:chunk_size]
        array = array[chunk_size:]


array_ref = ray.put(np.zeros(np.random.randint(1000, 1100)))
block_size = 100
dynamic_ref = split.remote(array_ref, block_size)
print(dynamic_ref)
i = -1
ref_generator = ray.get(dynamic_ref)
print(ref_generator)
for i, ref in enumerate(ref_generator):
    assert len(ray.get(ref)) <= block_size
num_blocks_generated = i + 1
array_size = len(ray.get(array_ref))
assert array_size <= num_blocks_generated * block_size


@ray.remote
def get_size(ref_generator):
    return [len(ray.get(r)) for r in ref_generator]


assert sum(ray.get(get_size.remote(dynamic_ref))) == array_size
ray.shutdown()
