# Ray doc: "Object Fault Tolerance" / "Actor Fault Tolerance" - actor crash surfaces as RayActorError
import os

import microray as ray

ray.init(num_cpus=2)


@ray.remote(max_restarts=0)
class Actor:
    def crash(self):
        os._exit(1)

    def ping(self):
        return 1


actor = Actor.remote()
assert ray.get(actor.ping.remote()) == 1
try:
    ray.get(actor.crash.remote())
except ray.exceptions.RayActorError:
    print("actor died")
else:
    raise AssertionError
try:
    ray.get(actor.ping.remote())
except ray.exceptions.RayActorError:
    print("dead actor calls fail")
print("ok")
ray.shutdown()
