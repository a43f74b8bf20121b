"""``JobConfig``: settings of a driver's job, passed as ``init(job_config=...)``
(Ray's ``ray.job_config.JobConfig``, with the fields Ray programs set).

``runtime_env`` and ``ray_namespace`` apply to the job as ``init(runtime_env=...,
namespace=...)`` do (those arguments win when both are given); ``default_actor_lifetime``
is the lifetime of actors created without one; ``metadata`` is kept on the object for
the program to read. Java-only fields (``jvm_options``, ``code_search_path``) are
accepted and have no effect, since microray runs only Python.
"""

from __future__ import annotations

from typing import Any

_LIFETIMES = ("detached", "non_detached")


class JobConfig:
    """What a driver's job runs with; see the module docstring for what each field does."""

    def __init__(
        self,
        jvm_options: list[str] | None = None,
        code_search_path: list[str] | None = None,
        runtime_env: dict[str, Any] | None = None,
        _client_job: bool = False,
        metadata: dict[str, str] | None = None,
        ray_namespace: str | None = None,
        default_actor_lifetime: str = "non_detached",
        _py_driver_sys_path: list[str] | None = None,
        _system_config: dict[str, Any] | None = None,
    ) -> None:
        self.jvm_options = list(jvm_options or [])
        self.code_search_path = list(code_search_path or [])
        self.runtime_env: dict[str, Any] = {}
        self.set_runtime_env(runtime_env)
        self._client_job = _client_job
        self.metadata: dict[str, str] = dict(metadata or {})
        self.ray_namespace = ray_namespace
        self.default_actor_lifetime = "non_detached"
        self.set_default_actor_lifetime(default_actor_lifetime)
        self._py_driver_sys_path = list(_py_driver_sys_path or [])
        self._system_config = dict(_system_config or {})

    def set_metadata(self, key: str, value: str) -> None:
        self.metadata[key] = value

    def set_runtime_env(self, runtime_env: dict[str, Any] | None, validate: bool = False) -> None:
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise TypeError(f"runtime_env must be a dict, got {type(runtime_env).__name__}")
        self.runtime_env = dict(runtime_env or {})

    def set_ray_namespace(self, ray_namespace: str) -> None:
        self.ray_namespace = ray_namespace

    def set_default_actor_lifetime(self, default_actor_lifetime: str) -> None:
        if default_actor_lifetime not in _LIFETIMES:
            raise ValueError(
                f"default_actor_lifetime must be one of {', '.join(_LIFETIMES)}, got {default_actor_lifetime!r}"
            )
        self.default_actor_lifetime = default_actor_lifetime

    def _validate_runtime_env(self) -> dict[str, Any]:
        return dict(self.runtime_env)

    @classmethod
    def from_json(cls, job_config_json: dict[str, Any]) -> "JobConfig":
        """A JobConfig from a dict of its field names (as Ray's ``from_json``)."""
        return cls(**job_config_json)

    def __repr__(self) -> str:
        return (f"JobConfig(runtime_env={self.runtime_env!r}, metadata={self.metadata!r}, "
                f"ray_namespace={self.ray_namespace!r}, default_actor_lifetime={self.default_actor_lifetime!r})")


__all__ = ["JobConfig"]
