"""The busy driver of the node-sharing tests: a driver program (for ``start_driver``)
that keeps the node's CPUs busy with rounds of short tasks."""

from __future__ import annotations

# what the busy driver does after its first rounds: go on until it is killed
FOREVER = "while True:\n    one_round()\n"


def busy_rounds(tasks: int, timeout: float) -> str:
    """The driver's start: ``one_round()`` runs ``tasks`` 50 ms tasks (each round within
    ``timeout`` seconds); it runs three rounds, then prints LOOPING. Append what it does next."""
    return f"""
ray.init(address="auto")

@ray.remote
def f(i):
    time.sleep(0.05)
    return i

def one_round():
    assert ray.get([f.remote(i) for i in range({tasks})], timeout={timeout}) == list(range({tasks}))

for _ in range(3):
    one_round()
print("LOOPING", flush=True)
"""
