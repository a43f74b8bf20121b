# Ray doc: "Lazy Computation Graphs with the Ray DAG API"
import microray as ray
from microray.dag.input_node import InputNode

ray.init(num_cpus=2)


@ray.remote
def func(src, inc=1):
    return src + inc


a_ref = func.bind(1, inc=2)
assert ray.get(a_ref.execute()) == 3
b_ref = func.bind(a_ref, inc=3)
assert ray.get(b_ref.execute()) == 6
c_ref = func.bind(b_ref, inc=a_ref)
assert ray.get(c_ref.execute()) == 9


@ray.remote
class Actor:
    def __init__(self, init_value):
        self.i = init_value

    def inc(self, x):
        self.i += x

    def get(self):
        return self.i


a1 = Actor.bind(10)
val = a1.get.bind()
assert ray.get(val.execute()) == 10


@ray.remote
def a(user_input):
    return user_input * 2


@ray.remote
def b(user_input):
    return user_input + 1


@ray.remote
def c(x, y):
    return x + y


with InputNode() as dag_input:
    a_ref = a.bind(dag_input)
    b_ref = b.bind(dag_input)
    dag = c.bind(a_ref, b_ref)

assert ray.get(dag.execute(2)) == 7
assert ray.get(dag.execute(3)) == 10
print("ok")
ray.shutdown()
