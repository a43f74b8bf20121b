# Ray doc: "Anti-pattern: Over-parallelizing with too fine-grained tasks harms speedup"
import microray as ray

ray.init(num_cpus=2)


def double(number):
    return number * 2


numbers = list(range(2000))


@ray.remote
def remote_double(number):
    return double(number)


doubled_number_refs = [remote_double.remote(n) for n in numbers[:200]]
assert ray.get(doubled_number_refs) == [n * 2 for n in numbers[:200]]


@ray.remote
def remote_double_batch(numbers):
    return [double(number) for number in numbers]


BATCH_SIZE = 500
refs = [remote_double_batch.remote(numbers[i:i + BATCH_SIZE]) for i in range(0, len(numbers), BATCH_SIZE)]
out = [x for batch in ray.get(refs) for x in batch]
assert out == [n * 2 for n in numbers]
print("ok")
ray.shutdown()
