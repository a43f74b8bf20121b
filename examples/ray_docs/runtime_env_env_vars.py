# Ray doc: "Environment Dependencies" - runtime_env env_vars (job, task and actor level)
import os

import microray as ray

ray.init(num_cpus=2, runtime_env={"env_vars": {"JOB_LEVEL": "job"}})


@ray.remote
def myfunc():
    return os.environ.get("JOB_LEVEL"), os.environ.get("FOO")


assert ray.get(myfunc.remote()) == ("job", None)
assert ray.get(myfunc.options(runtime_env={"env_vars": {"FOO": "bar"}}).remote())[1] == "bar"


@ray.remote
class MyClass:
    def get(self):
        return os.environ.get("FOO")


actor = MyClass.options(runtime_env={"env_vars": {"FOO": "actor"}}).remote()
assert ray.get(actor.get.remote()) == "actor"
print("ok")
ray.shutdown()
