"""The driver programs of the one-node soak test (run as ``python -c`` bodies by
``microray.testing.processes.start_driver``; each connects with ``address="auto"``).

``CHECKED``  the driver whose answers are checked. It reads one JSON command a line from
             stdin and answers each with one ``REPLY <json>`` line:
               {"op": "round", "tag", "seed", "held": null|"task"|"nested", "new_actor"}
                   one round of the mixed workload (see ``run_round``);
               {"op": "resources", "deadline"}
                   wait until ``available_resources() == cluster_resources()`` (or the
                   deadline) and say what both were, with the node's worker states;
               {"op": "exit"}
                   shut down and exit.
             Every part of a round catches its own error, so a broken part is reported by
             name while the other parts still answer.
``BUSY``     a victim driver: an actor (printing ``ACTOR <pid>``), an object in the store,
             and batches of short tasks in a loop, printing ``BATCH <n>`` after each.
``HOLDING``  a victim driver: one task that marks itself (``SOAK_HOLD_TAG``) and then waits
             on a gate the test never opens, so the driver surely holds a lease when it is killed.

Synchronisation with the test is by files in a marks folder (``SOAK_MARKS``), never by
sleeping: a task writes ``<tag>@<pid>`` when it starts, and a task that must stay busy
until the test has killed something waits for ``open-<tag>``.
"""

from __future__ import annotations

PRELUDE = """
import json, os, sys, time
import numpy as np

MARKS = os.environ["SOAK_MARKS"]


def mark(tag):
    open(os.path.join(MARKS, f"{tag}@{os.getpid()}"), "w").close()


def gate(tag, cap=120.0):
    # wait until the test opens the gate (bounded, so no task waits for ever)
    path = os.path.join(MARKS, "open-" + tag)
    end = time.monotonic() + cap
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.02)


@ray.remote
def gated(tag, x):
    mark(tag)
    gate(tag)
    return x * x


@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n

    def pid(self):
        return os.getpid()


ctx = ray.init(address="auto")
"""

CHECKED = PRELUDE + """
from microray.util.state import list_workers

OBJ = int(os.environ["SOAK_OBJ_BYTES"])          # bytes per object
N_OBJ = int(os.environ["SOAK_OBJECTS"])          # objects held at once: more than the store
ROUND_S = float(os.environ["SOAK_ROUND_S"])      # a round gives up after this long
SESSION = ctx["session_dir"]


@ray.remote
def square(x):
    return x * x


@ray.remote
def add(a, b):
    return a + b


@ray.remote
def total(*xs):
    return sum(xs)


@ray.remote
def checksum(arr):
    return [int(arr[0]), int(arr[-1]), int(arr.sum(dtype=np.int64))]


@ray.remote
def inner(tag, i):
    mark(tag + "-inner")
    gate(tag)
    return i * i


@ray.remote
def outer(tag, n):
    refs = [inner.remote(tag, i) for i in range(n)]
    mark(tag)                      # the nested tasks are submitted: this worker owns them
    return sum(ray.get(refs))


counter = Counter.remote()


def spill_files():
    return sum(len(files) for _, _, files in os.walk(os.path.join(SESSION, "spill")))


END = [0.0]


def left():
    # what is left of the round's time (at least a moment, so a stuck part fails fast)
    return max(0.5, END[0] - time.monotonic())


def part(out, name, fn):
    try:
        out[name] = fn()
    except Exception as exc:  # noqa: BLE001 -- reported to the test, part by part
        out[name] = {"error": f"{type(exc).__name__}: {exc}"[:600]}


def read_back(refs):
    got = []
    for ref in refs:
        value = ray.get(ref, timeout=left())
        got.append([int(value[0]), int(value[-1]), int(value.sum(dtype=np.int64))])
        del value                  # drop the view, so the object can be spilled again
    return got


def run_round(cmd):
    tag, seed, out = cmd["tag"], cmd["seed"], {}
    END[0] = time.monotonic() + ROUND_S
    held = None
    if cmd.get("held") == "task":
        held = gated.remote(tag, seed)
    elif cmd.get("held") == "nested":
        held = outer.remote(tag, 4)
    # tasks with dependencies
    sq = [square.remote(seed + i) for i in range(6)]
    part(out, "deps", lambda: ray.get(total.remote(*[add.remote(sq[i], sq[i + 1]) for i in range(5)]), timeout=left()))
    # an actor with state
    part(out, "counter", lambda: ray.get([counter.add.remote(1) for _ in range(3)], timeout=left()))
    part(out, "actor_pid", lambda: ray.get(counter.pid.remote(), timeout=left()))
    # objects of a few MB, more of them at once than the store holds
    refs = []
    try:
        refs = [ray.put(np.full(OBJ, (seed + i) % 251, dtype=np.uint8)) for i in range(N_OBJ)]
    except Exception as exc:  # noqa: BLE001
        out["put"] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
    out["spill_files"] = spill_files()
    part(out, "driver_reads", lambda: read_back(refs))
    part(out, "task_reads", lambda: ray.get([checksum.remote(r) for r in refs[::4]], timeout=left()))
    del refs
    if held is not None:
        part(out, "held", lambda: ray.get(held, timeout=left()))
    if cmd.get("new_actor"):
        def fresh():
            c = Counter.remote()       # needs a new worker process
            got = ray.get([c.add.remote(5) for _ in range(2)], timeout=left())
            ray.kill(c)
            return got
        part(out, "new_actor", fresh)
    return out


def resources(cmd):
    end = time.monotonic() + cmd["deadline"]
    t0 = time.monotonic()
    while True:
        avail, total_ = ray.available_resources(), ray.cluster_resources()
        if avail == total_ or time.monotonic() > end:
            break
        time.sleep(0.1)
    try:
        workers = [[w["pid"], w["state"]] for w in list_workers()]
    except Exception as exc:  # noqa: BLE001
        workers = f"{type(exc).__name__}: {exc}"
    return {"available": avail, "cluster": total_, "waited": round(time.monotonic() - t0, 2), "workers": workers}


print("REPLY " + json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "exit":
        break
    reply = run_round(cmd) if cmd["op"] == "round" else resources(cmd)
    print("REPLY " + json.dumps(reply), flush=True)
ray.shutdown()
"""

BUSY = PRELUDE + """
@ray.remote
def short(i):
    time.sleep(0.05)
    return i


acc = Counter.remote()
print(f"ACTOR {ray.get(acc.pid.remote())}", flush=True)
kept = ray.put(np.ones(2_000_000))  # 16 MB in the store, owned by this driver
n = 0
while True:
    ray.get([short.remote(i) for i in range(10)])
    ray.get(acc.add.remote(1))
    n += 1
    print(f"BATCH {n}", flush=True)
"""

HOLDING = PRELUDE + """
ref = gated.remote(os.environ["SOAK_HOLD_TAG"], 3)
ray.get(ref)
"""
