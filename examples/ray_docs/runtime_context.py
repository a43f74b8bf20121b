# Ray doc: "ray.runtime_context.RuntimeContext" / get_runtime_context examples
import microray as ray

ray.init(num_cpus=2)

ctx = ray.get_runtime_context()
print("job", ctx.get_job_id(), "node", ctx.get_node_id())
assert isinstance(ctx.get_job_id(), str)


@ray.remote
def task():
    c = ray.get_runtime_context()
    return c.get_task_id(), c.get_job_id()


task_id, job_id = ray.get(task.remote())
assert job_id == ctx.get_job_id() and isinstance(task_id, str)


@ray.remote
class Actor:
    def ids(self):
        c = ray.get_runtime_context()
        return c.get_actor_id(), c.get_actor_name()


a = Actor.options(name="ctx_actor").remote()
actor_id, name = ray.get(a.ids.remote())
assert isinstance(actor_id, str) and len(actor_id) > 0
assert name == "ctx_actor"
print("ok")
ray.shutdown()
