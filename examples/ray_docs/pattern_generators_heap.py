# Ray doc: "Pattern: Using generators to reduce heap memory usage"
import numpy as np

import microray as ray

ray.init(num_cpus=2)


@ray.remote
def large_values(num_returns):
    return [np.random.randint(np.iinfo(np.int8).max, size=(1_000_000, 1), dtype=np.int8)
            for _ in range(num_returns)]


@ray.remote
def large_values_generator(num_returns):
    for i in range(num_returns):
        yield np.random.randint(np.iinfo(np.int8).max, size=(1_000_000, 1), dtype=np.int8)
        print(f"yield return value {i}")


num_returns = 5
values = ray.get(large_values.remote(num_returns))
assert len(values) == num_returns
refs = large_values_generator.options(num_returns=num_returns).remote(num_returns)
for ref in refs:
    assert ray.get(ref).shape == (1_000_000, 1)
print("ok")
ray.shutdown()
