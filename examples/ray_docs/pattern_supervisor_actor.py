# Ray doc: "Pattern: Using a supervisor actor to manage a tree of actors"
import microray as ray

ray.init(num_cpus=2)


@ray.remote(num_cpus=0)
class Worker:
    def work(self):
        return "done"


@ray.remote(num_cpus=0)
class Supervisor:
    def __init__(self):
        self.workers = [Worker.remote() for _ in range(3)]

    def work(self):
        return ray.get([w.work.remote() for w in self.workers])


sup = Supervisor.remote()
assert ray.get(sup.work.remote()) == ["done", "done", "done"]
ray.kill(sup)  # Workers go with their owner.
print("ok")
ray.shutdown()
