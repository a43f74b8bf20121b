"""Ray's own job client against a microray head: ``JobSubmissionClient`` (submit, status,
info, logs, the log tail websocket, list, stop, delete) and ``ray job submit/list``, from
a real Ray 2.60 install, with the session token as a bearer header.

Ray lives in its own venv (it cannot share one with microray): ``MICRORAY_RAY_PYTHON``
or ``test-artifacts/ray-venv/bin/python``, which ``.ci/run`` creates. Without it the
tests are skipped and say how to make it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .support import Dash, dash  # noqa: F401 -- the fixture

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RAY_PYTHON = Path(os.environ.get("MICRORAY_RAY_PYTHON") or ROOT / "test-artifacts" / "ray-venv" / "bin" / "python")
_PROBE = "import aiohttp, pydantic, ray, ray.job_submission; assert ray.__version__ == '2.60.0', ray.__version__"


def _ray_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICRORAY_", "RAY_", "PYTHON"))}
    env.update(RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.fixture(scope="module")
def ray_python() -> Path:
    if not RAY_PYTHON.exists():
        pytest.skip(f"Ray 2.60 is not installed at {RAY_PYTHON}: .ci/run creates it "
                    "(python3 -m venv test-artifacts/ray-venv && test-artifacts/ray-venv/bin/pip install "
                    "'ray[default]==2.60.0'), or set MICRORAY_RAY_PYTHON")
    probe = subprocess.run([str(RAY_PYTHON), "-c", _PROBE], capture_output=True, text=True, env=_ray_env(), timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"{RAY_PYTHON} has no usable Ray 2.60 job SDK (ray[default]): {probe.stderr.strip()[-300:]}")
    return RAY_PYTHON


SDK_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys, tempfile, time
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, token = sys.argv[1], sys.argv[2]
    out = {}
    client = JobSubmissionClient(address, headers={"Authorization": "Bearer " + token})
    out["version"] = client.get_version()

    def wait_status(sid, wanted):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = client.get_job_status(sid)
            if status in wanted:
                return status
            time.sleep(0.1)
        raise TimeoutError(f"job {sid} never reached {wanted}: {client.get_job_info(sid)}")

    done = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    hi = client.submit_job(entrypoint="python -c \\"print('hi')\\"", submission_id="ray_sdk_hi",
                           metadata={"owner": "ray-sdk"}, entrypoint_num_cpus=1)
    out["hi_id"] = hi
    out["hi_status"] = wait_status(hi, done).value
    info = client.get_job_info(hi)
    out["hi_info"] = {"type": info.type.value, "status": info.status.value, "entrypoint": info.entrypoint,
                      "metadata": info.metadata, "exit": info.driver_exit_code,
                      "start_ms": info.start_time, "end_ms": info.end_time}
    out["hi_raw"] = client._do_request("GET", "/api/jobs/" + hi).json()
    out["hi_logs"] = client.get_job_logs(hi)

    counting = client.submit_job(
        entrypoint="python -c \\"import time\\nfor i in range(5): print('line', i, flush=True); time.sleep(0.2)\\"")

    async def tail():
        return "".join([chunk async for chunk in client.tail_job_logs(counting)])

    out["tailed"] = asyncio.run(tail())
    out["tail_then_status"] = client.get_job_status(counting).value

    sleeper = client.submit_job(entrypoint="sleep 300")
    wait_status(sleeper, {JobStatus.RUNNING})
    out["listed"] = sorted(j.submission_id for j in client.list_jobs())
    try:
        client.delete_job(sleeper)
        out["delete_running"] = "deleted"
    except RuntimeError as exc:
        out["delete_running"] = str(exc)
    out["stopped"] = client.stop_job(sleeper)
    out["sleeper_status"] = wait_status(sleeper, done).value

    out["deleted"] = client.delete_job(hi)
    try:
        client.get_job_info(hi)
        out["after_delete"] = "found"
    except RuntimeError as exc:
        out["after_delete"] = str(exc)
    out["listed_after"] = sorted(j.submission_id for j in client.list_jobs())

    local = tempfile.mkdtemp()
    try:
        client.submit_job(entrypoint="python script.py", runtime_env={"working_dir": local})
        out["ray_package"] = "submitted"
    except RuntimeError as exc:
        out["ray_package"] = str(exc)
    for name, headers in (("no_token", None), ("wrong_token", {"Authorization": "Bearer not-the-token"})):
        try:
            JobSubmissionClient(address, headers=headers).submit_job(entrypoint="echo never")
            out[name] = "submitted"
        except Exception as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
    print("RESULT " + json.dumps(out))
""")


def test_ray_job_submission_client(dash: Dash, ray_python: Path) -> None:  # noqa: F811
    proc = subprocess.run([str(ray_python), "-c", SDK_SCRIPT, dash.url, dash.token], capture_output=True, text=True,
                          env=_ray_env(), timeout=240)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = json.loads(lines[0][len("RESULT "):])
    assert out["version"] == "4"
    assert out["hi_id"] == "ray_sdk_hi" and out["hi_status"] == "SUCCEEDED"
    info = out["hi_info"]
    assert info["type"] == "SUBMISSION" and info["status"] == "SUCCEEDED" and info["exit"] == 0
    assert info["metadata"] == {"owner": "ray-sdk"}
    assert out["hi_raw"]["entrypoint_num_cpus"] == 1 and out["hi_raw"]["runtime_env"] == {}
    assert info["entrypoint"] == "python -c \"print('hi')\""
    # Ray's times are integer milliseconds since the epoch
    assert 1e12 < info["start_ms"] <= info["end_ms"] < 1e14
    assert out["hi_logs"] == "hi\n"
    assert out["tailed"] == "".join(f"line {i}\n" for i in range(5))
    assert out["tail_then_status"] == "SUCCEEDED"
    assert "ray_sdk_hi" in out["listed"] and len(out["listed"]) == 3
    assert "only a job that ended" in out["delete_running"]
    assert out["stopped"] is True and out["sleeper_status"] == "STOPPED"
    assert out["deleted"] is True
    assert "404" in out["after_delete"] and "ray_sdk_hi" not in out["listed_after"]
    assert len(out["listed_after"]) == 2
    assert "does not take runtime_env packages in Ray's format" in out["ray_package"], out["ray_package"]
    # Ray's client names 401 "Authentication required" and 403 "Authentication failed"
    assert out["no_token"].startswith("AuthenticationError: Authentication required"), out["no_token"]
    assert "needs the" in out["no_token"] and "token" in out["no_token"], out["no_token"]
    assert out["wrong_token"].startswith("AuthenticationError: Authentication failed"), out["wrong_token"]


def test_ray_job_cli(dash: Dash, ray_python: Path) -> None:  # noqa: F811
    ray_cli = [str(ray_python.parent / "ray")]
    env = _ray_env(RAY_JOB_HEADERS=json.dumps({"Authorization": f"Bearer {dash.token}"}))
    proc = subprocess.run([*ray_cli, "job", "submit", "--address", dash.url, "--submission-id", "ray_cli_hello",
                           "--", "echo", "hello"], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "hello" in proc.stdout.splitlines(), proc.stdout
    assert "Job 'ray_cli_hello' succeeded" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    status = subprocess.run([*ray_cli, "job", "status", "--address", dash.url, "ray_cli_hello"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert status.returncode == 0 and "Job 'ray_cli_hello' succeeded" in status.stdout, status.stdout + status.stderr
    listed = subprocess.run([*ray_cli, "job", "list", "--address", dash.url], capture_output=True, text=True, env=env,
                            timeout=120)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "submission_id='ray_cli_hello'" in listed.stdout and "JobStatus.SUCCEEDED" in listed.stdout, listed.stdout
    # Ray's own token setting (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN) sends the same bearer header
    tok_env = _ray_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=dash.token)
    proc = subprocess.run([*ray_cli, "job", "submit", "--address", dash.url, "--submission-id", "ray_cli_auth",
                           "--", "echo", "authed"], capture_output=True, text=True, env=tok_env, timeout=240)
    assert proc.returncode == 0 and "authed" in proc.stdout.splitlines(), proc.stdout[-2000:] + proc.stderr[-3000:]
    # microray's own CLI still reads the same job
    mine = subprocess.run([str(Path(sys.executable).parent / "microray"), "job", "list", "--address", dash.url,
                           "--token", dash.token, "--format", "json"], capture_output=True, text=True, timeout=120)
    assert mine.returncode == 0, mine.stderr
    assert any(j["submission_id"] == "ray_cli_hello" and j["status"] == "SUCCEEDED" for j in json.loads(mine.stdout))
