# Ray doc: "Anti-pattern: Using global variables to share state between tasks and actors"
import microray as ray

ray.init(num_cpus=2)

global_var = 3


@ray.remote
class Actor:
    def f(self):
        return global_var + 3


actor = Actor.remote()
global_var = 4
# Worker processes see their own copy of the global (3 + 3), not the driver's 4.
bad = ray.get(actor.f.remote())
print("anti-pattern gave", bad)


@ray.remote
class GlobalVarActor:
    def __init__(self):
        self.global_var = 3

    def set_global_var(self, var):
        self.global_var = var

    def get_global_var(self):
        return self.global_var


@ray.remote
class Actor2:
    def __init__(self, global_var_actor):
        self.global_var_actor = global_var_actor

    def f(self):
        return ray.get(self.global_var_actor.get_global_var.remote()) + 3


global_var_actor = GlobalVarActor.remote()
actor2 = Actor2.remote(global_var_actor)
ray.get(global_var_actor.set_global_var.remote(4))
assert ray.get(actor2.f.remote()) == 7
print("ok")
ray.shutdown()
