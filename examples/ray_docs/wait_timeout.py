# Ray doc: "ray.wait" API - num_returns, timeout, fetch_local
import time

import microray as ray

ray.init(num_cpus=2)


@ray.remote
def sleep_for(t):
    time.sleep(t)
    return t


refs = [sleep_for.remote(0.01), sleep_for.remote(5)]
ready, not_ready = ray.wait(refs, num_returns=1, timeout=3)
assert ready == [refs[0]] and not_ready == [refs[1]]
ready, not_ready = ray.wait(refs, num_returns=2, timeout=0.1)
assert ready == [refs[0]]
ready, not_ready = ray.wait([refs[0]], fetch_local=False)
assert ready == [refs[0]]
ray.cancel(refs[1], force=True)
print("ok")
ray.shutdown()
