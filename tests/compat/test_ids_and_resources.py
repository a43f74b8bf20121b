"""Runtime-context ids, available resources and GPU ids behave as Ray documents."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

import microray as ray
from microray.testing.processes import wait_for


# -- ids -------------------------------------------------------------------------------
@ray.remote
def task_ids():
    ctx = ray.get_runtime_context()
    return {
        "get_task_id": ctx.get_task_id(),
        "task_id": ctx.task_id.hex(),
        "task_id_nil": ctx.task_id.is_nil(),
        "job_id": ctx.job_id.hex(),
        "node_id": ctx.node_id.hex(),
        "actor_id": ctx.actor_id,
        "canceled": ctx.is_canceled(),
    }


@ray.remote
class IdActor:
    def ids(self):
        ctx = ray.get_runtime_context()
        return ctx.get_actor_id(), ctx.actor_id.hex(), ctx.actor_id.binary()


def test_driver_ids_are_hex_strings_and_id_objects(cluster):
    ctx = ray.get_runtime_context()
    job_hex = ctx.get_job_id()
    assert isinstance(job_hex, str) and bytes.fromhex(job_hex)
    assert isinstance(ctx.job_id, ray.JobID)
    assert ctx.job_id.hex() == job_hex and ctx.job_id.binary() == bytes.fromhex(job_hex)
    assert not ctx.job_id.is_nil()
    assert isinstance(ctx.node_id, ray.NodeID) and ctx.node_id.hex() == ctx.get_node_id() == cluster.node_id
    assert ctx.get_task_id() is None and ctx.task_id is None  # a driver runs no task
    assert ctx.get_actor_id() is None and ctx.actor_id is None
    with pytest.raises(RuntimeError, match="inside a task"):
        ctx.is_canceled()


def test_task_ids_match_their_hex_forms(cluster):
    ref = task_ids.remote()
    info = ray.get(ref)
    assert info["get_task_id"] == info["task_id"] == ref.task_id().hex()
    assert not info["task_id_nil"]
    assert info["job_id"] == ray.get_runtime_context().get_job_id()
    assert info["node_id"] == cluster.node_id
    assert info["actor_id"] is None
    assert info["canceled"] is False


def test_actor_id_inside_an_actor(cluster):
    a, b = IdActor.remote(), IdActor.remote()
    hex_a, obj_hex_a, binary_a = ray.get(a.ids.remote())
    assert hex_a == obj_hex_a and bytes.fromhex(hex_a) == binary_a
    assert ray.get(a.ids.remote())[0] == hex_a
    assert ray.get(b.ids.remote())[0] != hex_a


@ray.remote(max_concurrency=2)
class Looper:
    """A threaded actor: cancel() does not interrupt its methods, they poll is_canceled()."""

    def __init__(self):
        self.running = False
        self.saw_cancel = False

    def loop(self, deadline_s):
        self.running = True
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if ray.get_runtime_context().is_canceled():
                self.saw_cancel = True
                return "stopped"
            time.sleep(0.01)
        return "deadline"

    def is_running(self):
        return self.running

    def seen(self):
        return self.saw_cancel


def test_is_canceled_turns_true_in_a_method_that_polls_it(cluster):
    actor = Looper.remote()
    ref = actor.loop.remote(60)
    wait_for(lambda: ray.get(actor.is_running.remote()), timeout=60, what="the loop to be running")
    assert not ray.get(actor.seen.remote())
    ray.cancel(ref)
    with pytest.raises(ray.exceptions.TaskCancelledError):  # its value is dropped, as in Ray
        ray.get(ref, timeout=60)
    assert ray.get(actor.seen.remote())  # it was not interrupted: it saw the flag


# -- available resources ----------------------------------------------------------------
@ray.remote
def hold_cpu(flag):
    deadline = time.monotonic() + 60
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.path.exists(flag)


def test_available_resources_keeps_cpu_at_zero(cluster):
    assert ray.available_resources()["CPU"] > 0
    with tempfile.TemporaryDirectory() as tmp:
        flag = os.path.join(tmp, "release")
        refs = [hold_cpu.remote(flag) for _ in range(2)]  # the cluster has 2 CPUs
        try:
            wait_for(lambda: ray.available_resources().get("CPU", "missing") == 0,
                     timeout=60, what="CPU: 0 in available_resources() while every CPU is used")
        finally:
            Path(flag).touch()
        assert ray.get(refs, timeout=60) == [True, True]


# -- GPUs ----------------------------------------------------------------------------------
@ray.remote(num_gpus=1)
def gpu_task(folder, me):
    Path(folder, me).touch()
    deadline = time.monotonic() + 60  # wait for the other task, so both hold a GPU at once
    while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.environ.get("CUDA_VISIBLE_DEVICES"), ray.get_gpu_ids()


@ray.remote
def cpu_task():
    return os.environ.get("CUDA_VISIBLE_DEVICES"), ray.get_gpu_ids()


@ray.remote(num_gpus=1)
class GpuActor:
    def ids(self):
        return os.environ.get("CUDA_VISIBLE_DEVICES"), ray.get_gpu_ids()


def test_cuda_visible_devices_for_gpu_tasks(make_cluster):
    make_cluster(num_cpus=2, num_gpus=2)
    assert ray.cluster_resources()["GPU"] == 2
    with tempfile.TemporaryDirectory() as tmp:
        results = ray.get([gpu_task.remote(tmp, "a"), gpu_task.remote(tmp, "b")], timeout=90)
    seen = sorted(env for env, _ in results)
    assert seen == ["0", "1"]  # one GPU each, not the same one
    for env, ids in results:
        assert ids == [int(env)]
    assert ray.get(cpu_task.remote()) == (None, [])  # asked for no GPU: sees none
    assert ray.get_gpu_ids() == []  # the driver holds none
    actor = GpuActor.remote()
    env, ids = ray.get(actor.ids.remote())
    assert env in ("0", "1") and ids == [int(env)]
    assert ray.get(actor.ids.remote()) == (env, ids)  # kept for the actor's life


# -- many custom resources ---------------------------------------------------------------------
@ray.remote
def one():
    return 1


def test_init_with_ten_thousand_custom_resources(make_cluster):
    resources = {f"custom_{i}": 1 for i in range(10_000)}
    make_cluster(num_cpus=1, resources=resources)
    total = ray.cluster_resources()
    assert total["custom_9999"] == 1 and total["CPU"] == 1
    assert ray.get(one.options(resources={"custom_9999": 1}).remote(), timeout=60) == 1
