"""Submitted jobs: an entrypoint run as a subprocess of the dashboard process.

A job runs ``/bin/sh -c <entrypoint>`` in its working directory, in a new process
group, with ``MICRORAY_ADDRESS`` set to the GCS address and ``MICRORAY_TOKEN`` to the cluster
token (in its environment, never its arguments) so that ``microray.init()`` inside it
joins this cluster, and the cluster's interpreter first on ``PATH``. Its stdout and stderr go to
``<session>/logs/job-<submission_id>.log``. The table lives in this process (and is
mirrored to the GCS KV namespace ``job`` so other tools can read it); a job dies
with the dashboard (parent-death signal) and is stopped when the dashboard stops.

Statuses follow Ray's: PENDING -> RUNNING -> SUCCEEDED | FAILED | STOPPED.
``Job.ray()`` is a job as Ray's job REST API shows it (``JobDetails``: times in integer
milliseconds, ``runtime_env``, the ``entrypoint_*`` resources), so Ray's own job client
reads it; ``Job.public()`` is the same job as microray's dashboard shows it (times in
seconds). ``entrypoint_num_cpus``/``_num_gpus``/``_memory``/``_resources`` are recorded
and shown; the entrypoint runs on the head whatever they say (nothing is reserved for it).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from microray.runtime_env import JOB_RUNTIME_ENV_VAR

log = structlog.get_logger(__name__)

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
ENTRYPOINT_KEYS = ("entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_memory", "entrypoint_resources",
                   "entrypoint_label_selector")
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_LOG_CHUNK = 1024 * 1024
STOP_GRACE_S = 3.0

# Sets the parent-death signal, then becomes the shell: a job never outlives the dashboard.
_BOOT = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL('libc.so.6').prctl(1, signal.SIGTERM)\n"
    "except OSError:\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(143)\n"
    "os.execv('/bin/sh', ['/bin/sh', '-c', sys.argv[2]])\n"
)


class JobError(ValueError):
    """A bad request about a job (unknown id, bad field); ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    submission_id: str
    entrypoint: str
    working_dir: str
    status: str = "PENDING"
    message: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    start_time: float = 0.0
    end_time: float | None = None
    driver_exit_code: int | None = None
    driver_pid: int | None = None
    log_file: str = ""
    stop_requested: bool = False
    stop_time: float | None = None
    runtime_env: dict[str, Any] = field(default_factory=dict)
    entrypoint_resources: dict[str, Any] = field(default_factory=dict)  # Ray's entrypoint_num_cpus and kin

    def public(self) -> dict[str, Any]:
        d = asdict(self)
        d["job_id"] = self.submission_id
        d["type"] = "SUBMISSION"
        return d

    def ray(self) -> dict[str, Any]:
        """This job in the shape of Ray's ``JobDetails`` (a superset: microray's fields stay)."""
        d = self.public()
        extra = d.pop("entrypoint_resources")
        d.update({key: extra.get(key) for key in ENTRYPOINT_KEYS})
        d["start_time"] = int(self.start_time * 1000) if self.start_time else None
        d["end_time"] = int(self.end_time * 1000) if self.end_time is not None else None
        d["stop_time"] = int(self.stop_time * 1000) if self.stop_time is not None else None
        d["error_type"] = "JOB_ENTRYPOINT_COMMAND_ERROR" if self.status == "FAILED" and self.driver_exit_code else None
        d["driver_info"] = None
        d["driver_agent_http_address"] = None
        d["driver_node_id"] = None
        return d


class JobManager:
    def __init__(self, session_dir: str, gcs_address: str, mirror: Any = None, token: str = "") -> None:
        self.logs_dir = os.path.join(session_dir, "logs")
        self.gcs_address = gcs_address
        self._token = token
        self.jobs: dict[str, Job] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._mirror = mirror  # callable(job_dict) that records it in the GCS KV, or None

    # -- requests ---------------------------------------------------------------------
    def submit(self, body: dict[str, Any], setup: Any = None) -> Job:
        """Start a job. ``setup`` (a ``runtime_env.WorkerSetup``): its runtime env's packages,
        unpacked on this node; the driver runs in the working_dir and gets the runtime env
        as its job's (``init`` reads ``MICRORAY_JOB_RUNTIME_ENV``), so its tasks run in it too."""
        entrypoint = body.get("entrypoint")
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise JobError("'entrypoint' must be a non-empty string (a shell command)")
        runtime_env = body.get("runtime_env") or {}
        if not isinstance(runtime_env, dict):
            raise JobError("'runtime_env' must be an object")
        working_dir = runtime_env.get("working_dir") or body.get("working_dir") or os.getcwd()
        cwd = setup.cwd if setup is not None and setup.cwd else working_dir
        if setup is None or not setup.cwd:
            if not isinstance(working_dir, str) or not os.path.isabs(working_dir) or not os.path.isdir(working_dir):
                raise JobError("working_dir must be a package uploaded to /api/packages/ or an existing absolute "
                               f"directory on the head node, got {working_dir!r}")
        env_vars = runtime_env.get("env_vars") or {}
        if not isinstance(env_vars, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()):
            raise JobError("runtime_env.env_vars must map strings to strings")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise JobError("'metadata' must be an object")
        resources = _entrypoint_resources(body)
        sid = body.get("submission_id") or body.get("job_id") or f"mrsubmit_{secrets.token_hex(8)}"
        if not isinstance(sid, str) or not _ID.match(sid):
            raise JobError("'submission_id' must be 1-64 letters, digits, '_' or '-'")
        if sid in self.jobs:
            raise JobError(f"a job with submission_id {sid!r} already exists", status=409)
        job = Job(sid, entrypoint, working_dir, metadata={str(k): str(v) for k, v in metadata.items()},
                  runtime_env=runtime_env, entrypoint_resources=resources)
        job.log_file = os.path.join(self.logs_dir, f"job-{sid}.log")
        job.start_time = time.time()
        self.jobs[sid] = job
        env = dict(os.environ)
        env.update(env_vars)
        env["MICRORAY_ADDRESS"] = self.gcs_address
        if self._token:
            env["MICRORAY_TOKEN"] = self._token
        env["MICRORAY_JOB_SUBMISSION_ID"] = sid  # the driver's job names it (the job page's tasks)
        # ``python`` in the entrypoint is the interpreter the cluster runs on
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", os.defpath)])
        env["PYTHONUNBUFFERED"] = "1"
        if setup is not None:
            env[JOB_RUNTIME_ENV_VAR] = json.dumps(runtime_env)
            env["PYTHONPATH"] = os.pathsep.join([*setup.sys_path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        try:
            with open(job.log_file, "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-c", _BOOT, str(os.getpid()), entrypoint],
                    cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True,
                )
        except OSError as exc:
            job.status, job.message, job.end_time = "FAILED", f"could not start: {exc}", time.time()
            self._record(job)
            return job
        self._procs[sid] = proc
        job.driver_pid = proc.pid
        job.status = "RUNNING"
        job.message = "running"
        log.info("job_started", submission_id=sid, pid=proc.pid, entrypoint=entrypoint[:200])
        self._record(job)
        return job

    def get(self, sid: str) -> Job:
        job = self.jobs.get(sid)
        if job is None:
            raise JobError(f"no job {sid!r}", status=404)
        return job

    def logs(self, sid: str, offset: int = 0) -> dict[str, Any]:
        job = self.get(sid)
        try:
            with open(job.log_file, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                start = max(offset, size - MAX_LOG_CHUNK) if offset <= size else size
                f.seek(start)
                data = f.read(MAX_LOG_CHUNK)
        except OSError:
            data, start = b"", 0
        return {"logs": data.decode("utf-8", errors="replace"), "offset": start + len(data),
                "status": job.status}

    def delete(self, sid: str) -> bool:
        """Forget an ended job (its table entry and GCS mirror; its log file stays in the session)."""
        job = self.get(sid)
        if job.status not in TERMINAL:
            raise JobError(f"job {sid!r} is {job.status}; only a job that ended (SUCCEEDED, FAILED or "
                           "STOPPED) can be deleted: stop it first")
        del self.jobs[sid]
        if self._mirror is not None:
            try:
                self._mirror(sid, None)
            except Exception as exc:  # noqa: BLE001 -- the table here is the source of truth
                log.debug("job_mirror_failed", submission_id=sid, error=repr(exc))
        log.info("job_deleted", submission_id=sid)
        return True

    def stop(self, sid: str) -> bool:
        job = self.get(sid)
        proc = self._procs.get(sid)
        if job.status in TERMINAL or proc is None:
            return False
        job.stop_requested = True
        job.stop_time = job.stop_time or time.time()
        _killpg(proc.pid, signal.SIGTERM)
        job.message = "stop requested"
        return True

    # -- upkeep (called periodically from the server loop) ----------------------------------
    def poll(self) -> None:
        now = time.time()
        for sid, proc in list(self._procs.items()):
            job = self.jobs[sid]
            code = proc.poll()
            if code is None:
                if job.stop_time is not None and now - job.stop_time > STOP_GRACE_S:
                    _killpg(proc.pid, signal.SIGKILL)
                continue
            del self._procs[sid]
            _killpg(proc.pid, signal.SIGKILL)  # anything the entrypoint left behind in its group
            job.driver_exit_code = code
            job.end_time = now
            if job.stop_requested:
                job.status, job.message = "STOPPED", "stopped by request"
            elif code == 0:
                job.status, job.message = "SUCCEEDED", "finished"
            else:
                job.status, job.message = "FAILED", f"entrypoint exited with code {code}"
            log.info("job_ended", submission_id=sid, status=job.status, code=code)
            self._record(job)

    def running(self) -> int:
        return len(self._procs)

    def stop_all(self) -> None:
        for sid, proc in list(self._procs.items()):
            self.jobs[sid].stop_requested = True
            _killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in list(self._procs.values()):
            try:
                proc.wait(max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.poll()

    def _record(self, job: Job) -> None:
        if self._mirror is None:
            return
        try:
            self._mirror(job.submission_id, json.dumps(job.public()).encode())
        except Exception as exc:  # noqa: BLE001 -- the table here is the source of truth
            log.debug("job_mirror_failed", submission_id=job.submission_id, error=repr(exc))


def _entrypoint_resources(body: dict[str, Any]) -> dict[str, Any]:
    """Ray's ``entrypoint_*`` fields of a submit request, checked (absent or null: left out)."""
    out: dict[str, Any] = {}
    for key in ("entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_memory"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise JobError(f"{key!r} must be a number >= 0, got {value!r}")
        out[key] = value
    for key, kind in (("entrypoint_resources", (int, float)), ("entrypoint_label_selector", str)):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, kind)
                                                  and not isinstance(v, bool) for k, v in value.items()):
            raise JobError(f"{key!r} must map names to {'numbers' if kind is not str else 'strings'}, got {value!r}")
        out[key] = value
    return out


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
