"""``init`` accepts what Ray programs pass it: ``_system_config`` (ignored, with a
warning naming its keys) and ``job_config``."""

from __future__ import annotations

import os

import pytest

import microray as ray
from microray.job_config import JobConfig


@ray.remote
def env_var(name):
    return os.environ.get(name)


def test_system_config_is_accepted_with_a_warning_naming_its_keys(make_cluster):
    with pytest.warns(UserWarning, match="ignores _system_config") as warned:
        make_cluster(num_cpus=1, _system_config={"object_timeout_milliseconds": 200, "num_heartbeats_timeout": 5})
    message = str(warned[0].message)
    assert "object_timeout_milliseconds" in message and "num_heartbeats_timeout" in message
    assert ray.get(env_var.remote("HOME")) is not None  # the cluster runs


def test_job_config_runtime_env_and_namespace(make_cluster):
    config = JobConfig(runtime_env={"env_vars": {"COMPAT_JOB_VAR": "from-job-config"}},
                       metadata={"owner": "tests"}, ray_namespace="compat-jobs")
    make_cluster(num_cpus=1, job_config=config)
    assert ray.get_runtime_context().namespace == "compat-jobs"
    assert ray.get(env_var.remote("COMPAT_JOB_VAR")) == "from-job-config"


def test_job_config_must_be_a_job_config(no_cluster):
    with pytest.raises(TypeError, match="JobConfig"):
        ray.init(num_cpus=1, job_config={"runtime_env": {}})
    assert not ray.is_initialized()
