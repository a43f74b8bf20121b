# Ray doc: "Pattern: Using an actor to synchronize other tasks and actors"
import time

import microray as ray

ray.init(num_cpus=2)


@ray.remote(num_cpus=0)
class Signal:
    def __init__(self):
        self.ready = False

    def send(self):
        self.ready = True

    def is_ready(self):
        return self.ready


@ray.remote
def waiter(signal):
    while not ray.get(signal.is_ready.remote()):
        time.sleep(0.05)
    return "released"


signal = Signal.remote()
refs = [waiter.remote(signal) for _ in range(2)]
ready, _ = ray.wait(refs, timeout=0.3)
assert ready == []
ray.get(signal.send.remote())
assert ray.get(refs) == ["released", "released"]
print("ok")
ray.shutdown()
