"""Ray's public names import from microray, and the ones microray does not run say so.

Without a cluster: every name here must import (a missing one fails a whole Ray test
file at import), with Ray's class hierarchy where there is one."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import pytest

import microray as ray
import microray.exceptions as exc

# Ray's ray.exceptions classes and the bases Ray gives them (from Ray's API reference).
RAY_EXCEPTION_BASES = {
    "RayError": (Exception,),
    "CrossLanguageError": ("RayError",),
    "TaskCancelledError": ("RayError",),
    "RayTaskError": ("RayError",),
    "LocalRayletDiedError": ("RayError",),
    "WorkerCrashedError": ("RayError",),
    "RayActorError": ("RayError",),
    "ActorDiedError": ("RayActorError",),
    "ActorUnavailableError": ("RayActorError",),
    "RaySystemError": ("RayError",),
    "UserCodeException": ("RayError",),
    "ObjectStoreFullError": ("RayError",),
    "OutOfDiskError": ("RayError",),
    "OutOfMemoryError": ("RayError",),
    "NodeDiedError": ("RayError",),
    "ObjectLostError": ("RayError",),
    "ObjectFetchTimedOutError": ("ObjectLostError",),
    "RpcError": ("RayError",),
    "ReferenceCountingAssertionError": ("ObjectLostError", AssertionError),
    "ObjectFreedError": ("ObjectLostError",),
    "OwnerDiedError": ("ObjectLostError",),
    "ObjectReconstructionFailedError": ("ObjectLostError",),
    "ObjectReconstructionFailedMaxAttemptsExceededError": ("ObjectLostError",),
    "ObjectReconstructionFailedLineageEvictedError": ("ObjectLostError",),
    "GetTimeoutError": ("RayError", TimeoutError),
    "PlasmaObjectNotAvailable": ("RayError",),
    "AsyncioActorExit": ("RayError",),
    "RuntimeEnvSetupError": ("RayError",),
    "TaskPlacementGroupRemoved": ("RayError",),
    "ActorPlacementGroupRemoved": ("RayError",),
    "PendingCallsLimitExceeded": ("RayError",),
    "TaskUnschedulableError": ("RayError",),
    "ActorUnschedulableError": ("RayError",),
    "ObjectRefStreamEndOfStreamError": ("RayError",),
    "RayChannelError": ("RaySystemError",),
    "RayChannelTimeoutError": ("RayChannelError", TimeoutError),
    "RayCgraphCapacityExceeded": ("RaySystemError",),
    "UnserializableException": ("RayError",),
}


@pytest.mark.parametrize("name", sorted(RAY_EXCEPTION_BASES))
def test_every_ray_exception_exists_with_rays_bases(name):
    cls = getattr(ray.exceptions, name)
    assert isinstance(cls, type) and issubclass(cls, BaseException)
    for base in RAY_EXCEPTION_BASES[name]:
        base_cls = getattr(exc, base) if isinstance(base, str) else base
        assert issubclass(cls, base_cls), f"{name} should derive from {base_cls.__name__}"
    assert name in exc.__all__


@pytest.mark.parametrize("make", [
    lambda: exc.TaskUnschedulableError("node n1 is dead"),
    lambda: exc.ActorUnschedulableError("node n1 is dead"),
    lambda: exc.NodeDiedError("node n1 died"),
    lambda: exc.OutOfMemoryError("the node ran out of memory"),
    lambda: exc.RuntimeEnvSetupError("pip failed"),
    lambda: exc.ObjectFreedError("ab" * 20),
    lambda: exc.RpcError("unavailable", 14),
])
def test_exceptions_survive_pickling_with_their_message(make):
    err = make()
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err) and str(err)


def test_ray_exception_types_lists_the_result_errors():
    assert exc.ObjectReconstructionFailedError in exc.RAY_EXCEPTION_TYPES
    assert all(issubclass(t, exc.RayError) for t in exc.RAY_EXCEPTION_TYPES)


def test_cloudpickle_is_ray_cloudpickle():
    offset = 5
    fn = ray.cloudpickle.loads(ray.cloudpickle.dumps(lambda x: x + offset))
    assert fn(1) == 6
    from microray import cloudpickle

    assert cloudpickle.PicklingError is pickle.PicklingError


def test_accelerator_constants():
    from microray.util import accelerators

    assert accelerators.NVIDIA_TESLA_V100 == "V100"
    assert accelerators.NVIDIA_TESLA_T4 == "T4"
    assert ray.util.accelerators.NVIDIA_A100 == "A100"


def test_placement_group_names_import_and_say_they_are_unsupported():
    from microray.util.placement_group import (
        PlacementGroup,
        get_current_placement_group,
        get_placement_group,
        placement_group,
        placement_group_table,
        remove_placement_group,
    )
    from microray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    assert PlacementGroup and PlacementGroupSchedulingStrategy
    for call in (lambda: placement_group([{"CPU": 1}]), lambda: ray.util.placement_group([{"CPU": 1}]),
                 lambda: get_placement_group("pg"), lambda: remove_placement_group(None)):
        with pytest.raises(NotImplementedError, match="does not support placement groups") as info:
            call()
        assert isinstance(info.value, exc.RayError)
        assert "NodeAffinitySchedulingStrategy" in str(info.value)  # says what exists instead
    # true of every microray cluster: no placement group exists, none is current
    assert get_current_placement_group() is None
    assert placement_group_table() == {}
    assert PlacementGroupSchedulingStrategy(placement_group=None).to_wire() == "DEFAULT"


def test_top_level_names():
    assert ray.ObjectID is ray.ObjectRef
    assert ray.runtime_context.get_runtime_context and ray.runtime_context.RuntimeContext
    assert ray.job_config.JobConfig
    assert ray.DynamicObjectRefGenerator
    assert ray.dag.InputNode and ray.dag.MultiOutputNode
    assert ray.experimental.tqdm_ray.tqdm
    assert ray.JobID.from_hex("01000000").hex() == "01000000"


def test_nil_object_ref():
    nil = ray.ObjectRef.nil()
    assert nil.is_nil() and nil == ray.ObjectRef.nil()
    assert set(nil.binary()) == {0xFF}


def test_dynamic_object_ref_generator_holds_refs_in_order():
    refs = [ray.ObjectRef.nil(), ray.ObjectRef.nil()]
    gen = ray.DynamicObjectRefGenerator(refs)
    assert len(gen) == 2 and list(gen) == refs


def test_job_config_fields():
    from microray.job_config import JobConfig

    jc = JobConfig(runtime_env={"env_vars": {"A": "1"}}, metadata={"team": "x"}, ray_namespace="ns")
    jc.set_metadata("run", "7")
    assert jc.metadata == {"team": "x", "run": "7"}
    assert jc.runtime_env == {"env_vars": {"A": "1"}} and jc.ray_namespace == "ns"
    assert JobConfig.from_json({"ray_namespace": "b"}).ray_namespace == "b"
    with pytest.raises(ValueError, match="default_actor_lifetime"):
        JobConfig(default_actor_lifetime="forever")


def test_tqdm_ray_prints_plain_progress():
    from microray.experimental import tqdm_ray

    out = io.StringIO()
    bar = tqdm_ray.tqdm(total=3, desc="steps", file=out, flush_interval_s=0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("steps: 0/3")
    assert lines[-1].startswith("steps: 3/3") and "done" in lines[-1]
    out = io.StringIO()
    assert list(tqdm_ray.tqdm(range(4), file=out)) == [0, 1, 2, 3]
    assert "4/4" in out.getvalue().splitlines()[-1]


def test_import_microray_stays_light():
    code = ("import sys, microray; microray.exceptions; microray.util.placement_group; "
            "print(sorted(m for m in ('grpc', 'microray.api', 'microray.dag') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
