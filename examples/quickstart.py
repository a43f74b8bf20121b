"""A first microray program: tasks, objects and an actor on the embedded one-node cluster.

Run it with ``python examples/quickstart.py`` — no server to install.
"""

import numpy as np

import microray as ray


@ray.remote
def square(x: int) -> int:
    return x * x


@ray.remote
def total(values: list[int]) -> int:
    return sum(values)


@ray.remote
class Counter:
    def __init__(self, start: int) -> None:
        self.n = start

    def incr(self) -> int:
        self.n += 1
        return self.n


def main() -> None:
    ray.init(num_cpus=2)
    squares = ray.get([square.remote(i) for i in range(1000)])
    print("sum of squares 0..999:", ray.get(total.remote(squares)))

    array = np.arange(10_000_000, dtype=np.float64)  # 80 MB, read back zero-copy
    ref = ray.put(array)
    view = ray.get(ref)
    print("array round trip equal:", bool((view == array).all()), "| read-only:", not view.flags.writeable)

    counter = Counter.remote(0)
    print("counter:", ray.get([counter.incr.remote() for _ in range(5)]))
    ray.shutdown()


if __name__ == "__main__":
    main()
