# Ray doc: "Named Actors" - name, get_actor, get_if_exists, namespace, detached lifetime
import microray as ray

ray.init(num_cpus=2, namespace="colors")


@ray.remote
class Counter:
    def __init__(self):
        self.v = 0

    def inc(self):
        self.v += 1
        return self.v


counter = Counter.options(name="some_name").remote()
same = ray.get_actor("some_name")
assert ray.get(same.inc.remote()) == 1


@ray.remote
class Greeter:
    def __init__(self, value):
        self.value = value

    def say_hello(self):
        return self.value


a = Greeter.options(name="g1", get_if_exists=True).remote("Old Greeting")
assert ray.get(a.say_hello.remote()) == "Old Greeting"
b = Greeter.options(name="g1", get_if_exists=True).remote("New Greeting")
assert ray.get(b.say_hello.remote()) == "Old Greeting"

actor = Counter.options(name="orange", namespace="fruits").remote()
assert ray.get(ray.get_actor("orange", namespace="fruits").inc.remote()) == 1
try:
    ray.get_actor("orange")
except ValueError:
    pass
else:
    raise AssertionError("orange should not be in namespace colors")

detached = Counter.options(name="CounterActor", lifetime="detached").remote()
ray.get(detached.inc.remote())
ray.kill(detached)
print("ok")
ray.shutdown()
