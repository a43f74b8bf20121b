# Ray doc: "Terminating Actors" - ray.kill and exit_actor
import microray as ray

ray.init(num_cpus=2)


@ray.remote
class Actor:
    def ping(self):
        return "pong"

    def exit(self):
        ray.actor.exit_actor()


actor_handle = Actor.remote()
assert ray.get(actor_handle.ping.remote()) == "pong"
ray.kill(actor_handle)
try:
    ray.get(actor_handle.ping.remote())
except ray.exceptions.RayActorError:
    print("killed actor raises RayActorError")
else:
    raise AssertionError("expected RayActorError")

actor = Actor.remote()
exit_ref = actor.exit.remote()
try:
    ray.get(exit_ref)
except ray.exceptions.RayActorError:
    print("exit_actor: method raises RayActorError")
print("ok")
ray.shutdown()
