# Ray doc: "Anti-pattern: Redefining the same remote function or class harms performance"
import microray as ray

ray.init(num_cpus=2)

outputs = []
for i in range(5):
    @ray.remote
    def double(i):
        return i * 2
    outputs.append(double.remote(i))
assert ray.get(outputs) == [0, 2, 4, 6, 8]


@ray.remote
def double2(i):
    return i * 2


assert ray.get([double2.remote(i) for i in range(5)]) == [0, 2, 4, 6, 8]
print("ok")
ray.shutdown()
