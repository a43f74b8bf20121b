# Ray doc: "Anti-pattern: Processing results in submission order using ray.get increases runtime"
import random
import time

import microray as ray

ray.init(num_cpus=2)


@ray.remote
def f(i):
    time.sleep(random.random() / 20)
    return i


sum_in_submission_order = 0
refs = [f.remote(i) for i in range(20)]
for ref in refs:
    sum_in_submission_order += ray.get(ref)

sum_in_completion_order = 0
refs = [f.remote(i) for i in range(20)]
unfinished = refs
while unfinished:
    finished, unfinished = ray.wait(unfinished, num_returns=1)
    sum_in_completion_order += ray.get(finished[0])
assert sum_in_submission_order == sum_in_completion_order == sum(range(20))
print("ok")
ray.shutdown()
