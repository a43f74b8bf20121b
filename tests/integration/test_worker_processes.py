"""The processes below a raylet: a zygote that dies is replaced without taking workers or
actors with it, a worker's death names its cause, a killed raylet's shared memory goes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import microray as ray
from microray.exceptions import WorkerCrashedError
from microray.testing.processes import pid_alive, wait_for, worker_pids, zygote_pids

from .conftest import shm_entries


@ray.remote
def pid_of(x):
    return os.getpid(), x


@ray.remote
def env_pid(x):
    return os.getpid(), os.environ.get("MICRORAY_TEST_ZYGOTE"), x


@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return os.getpid(), self.n


def _raylet_pid() -> int:
    return ray.api._head.pids["raylet"]


def _node_alive(node_id: str) -> bool:
    return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())


def _kill_zygote(raylet: int) -> int:
    zygotes = wait_for(lambda: zygote_pids(raylet), timeout=30, what="the zygote")
    assert len(zygotes) == 1, zygotes
    os.kill(zygotes[0], signal.SIGKILL)
    wait_for(lambda: not pid_alive(zygotes[0]), timeout=10, what="the zygote to die")
    return zygotes[0]


def test_killed_zygote_is_replaced_and_takes_no_worker_with_it(make_cluster):
    info = make_cluster(num_cpus=2)
    raylet = _raylet_pid()
    actor = Counter.remote()
    actor_pid, n = ray.get(actor.incr.remote(), timeout=60)
    assert n == 1
    task_pids = {p for p, _ in ray.get([pid_of.remote(i) for i in range(8)], timeout=60)}
    workers_before = set(worker_pids(raylet))
    assert actor_pid in workers_before and task_pids <= workers_before

    old = _kill_zygote(raylet)

    # running workers and the actor are untouched
    assert all(pid_alive(p) for p in workers_before), "a worker died with the zygote"
    assert ray.get(actor.incr.remote(), timeout=60) == (actor_pid, 2)
    assert [x for _, x in ray.get([pid_of.remote(i) for i in range(8)], timeout=60)] == list(range(8))
    # a new runtime env needs new workers: started with the zygote gone or not yet ready
    env = {"env_vars": {"MICRORAY_TEST_ZYGOTE": "after-kill"}}
    got = ray.get([env_pid.options(runtime_env=env).remote(i) for i in range(4)], timeout=120)
    assert [(e, x) for _, e, x in got] == [("after-kill", i) for i in range(4)]
    assert {p for p, _, _ in got}.isdisjoint(workers_before)
    # a new zygote takes over, and the node stays alive
    new = wait_for(lambda: [z for z in zygote_pids(raylet) if z != old], timeout=60, what="a new zygote")
    assert len(new) == 1
    wait_for(lambda: "zygote_ready" in info.raylet_log(), timeout=60, what="the new zygote to be ready")
    env2 = {"env_vars": {"MICRORAY_TEST_ZYGOTE": "new-zygote"}}
    got = ray.get([env_pid.options(runtime_env=env2).remote(i) for i in range(2)], timeout=60)
    assert [e for _, e, _ in got] == ["new-zygote"] * 2
    assert pid_alive(raylet) and _node_alive(info.node_id)
    assert ray.get(actor.incr.remote(), timeout=60) == (actor_pid, 3)
    log = info.raylet_log()
    assert "zygote_exited" in log and "zygote_restarted" in log


def test_zygote_killed_again_and_again(make_cluster):
    make_cluster(num_cpus=2)
    raylet = _raylet_pid()
    for round_ in range(3):
        _kill_zygote(raylet)
        env = {"env_vars": {"MICRORAY_TEST_ZYGOTE": f"round-{round_}"}}
        got = ray.get([env_pid.options(runtime_env=env).remote(i) for i in range(2)], timeout=120)
        assert [e for _, e, _ in got] == [f"round-{round_}"] * 2
    assert ray.get(pid_of.remote("end"), timeout=60)[1] == "end"


# -- a worker's death names its cause ---------------------------------------------------
@ray.remote(max_retries=0)
def exit_with(code):
    os._exit(code)


@ray.remote(max_retries=0)
def segfault_in_task():
    os.kill(os.getpid(), signal.SIGSEGV)


def _worker_err_logs(session_dir: str, needle: str) -> list[str]:
    return [p.read_text(errors="replace") for p in (Path(session_dir) / "logs").glob("worker-*.err")
            if needle in p.read_text(errors="replace")]


def test_exit_code_is_named_in_the_error_and_the_workers_log(cluster):
    with pytest.raises(WorkerCrashedError, match=r"exited with code 3") as err:
        ray.get(exit_with.remote(3), timeout=60)
    pid = int(str(err.value).split("(pid ", 1)[1].split(")", 1)[0])
    wait_for(lambda: _worker_err_logs(cluster.session_dir, f"(pid {pid}) exited with code 3"), timeout=10,
             what=f"the raylet's note in worker {pid}'s log")


def test_fatal_signal_is_named_and_leaves_a_stack(cluster):
    with pytest.raises(WorkerCrashedError, match=r"killed by signal 11 \(SIGSEGV\)") as err:
        ray.get(segfault_in_task.remote(), timeout=60)
    pid = int(str(err.value).split("(pid ", 1)[1].split(")", 1)[0])
    logs = Path(cluster.session_dir) / "logs"

    def stack():
        for path in logs.glob("worker-*.err"):
            text = path.read_text(errors="replace")
            if "Segmentation fault" in text and "segfault_in_task" in text:
                return text
        return None

    text = wait_for(stack, timeout=10, what=f"the faulthandler stack of worker {pid}")
    assert "Fatal Python error: Segmentation fault" in text
    assert "killed by signal 11 (SIGSEGV)" in cluster.raylet_log()


def test_worker_killed_by_signal_9_is_named(cluster):
    @ray.remote(max_retries=0)
    def kill_myself():
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(WorkerCrashedError, match=r"killed by signal 9 \(SIGKILL\)") as err:
        ray.get(kill_myself.remote(), timeout=60)
    pid = int(str(err.value).split("(pid ", 1)[1].split(")", 1)[0])
    wait_for(lambda: _worker_err_logs(cluster.session_dir, f"(pid {pid}) killed by signal 9 (SIGKILL)"),
             timeout=10, what=f"the raylet's note in worker {pid}'s log")


# -- a killed raylet's shared memory -------------------------------------------------------
def test_killed_raylets_namespace_is_removed_at_once(make_cluster, tmp_path):
    info = make_cluster(num_cpus=1, object_store_memory=40 * 1024 * 1024)
    refs = [ray.put(os.urandom(8 * 1024 * 1024)) for _ in range(8)]  # past capacity: spills
    spill = Path(info.session_dir) / "spill" / info.namespace
    assert shm_entries(info.namespace)
    wait_for(lambda: any(spill.rglob("*")), timeout=10, what="spill files")
    os.kill(_raylet_pid(), signal.SIGKILL)
    wait_for(lambda: not shm_entries(info.namespace), timeout=15, what="the namespace to be removed")
    wait_for(lambda: not spill.exists(), timeout=15, what="the spill folder to be removed")
    del refs
