# Ray doc: "Fault Tolerance" / "Exceptions" - RayTaskError is an instance of the user error
import microray as ray

ray.init(num_cpus=2)


class MyException(Exception):
    pass


@ray.remote
def f():
    raise MyException("boom")


try:
    ray.get(f.remote())
except MyException as e:
    assert isinstance(e, ray.exceptions.RayTaskError)
    print("caught", type(e).__name__)
else:
    raise AssertionError


@ray.remote
def g():
    raise ValueError("bad value")


try:
    ray.get(g.remote())
except ray.exceptions.RayTaskError as e:
    assert isinstance(e.cause, ValueError)
print("ok")
ray.shutdown()
