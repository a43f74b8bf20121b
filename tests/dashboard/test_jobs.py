"""The job API (``/api/jobs/``): an entrypoint runs in its working directory as a
driver of this cluster, its output lands in ``<session>/logs/job-<id>.log``, and its
status follows the process."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from .support import Dash, wait_for

SCRIPT = textwrap.dedent("""
    import os
    import microray as ray

    ray.init()

    @ray.remote
    def double(x):
        return 2 * x

    print("cwd", os.getcwd())
    print("doubled", sum(ray.get([double.remote(i) for i in range(10)])))
""")


def _submit(dash: Dash, body: dict) -> str:
    reply = dash.post("/api/jobs/", body, token=dash.token)
    assert reply.status == 200, reply.body
    return reply.json()["submission_id"]


def _ended(dash: Dash, sid: str) -> dict:
    return wait_for(lambda: (j := dash.get_json(f"/api/jobs/{sid}"))["status"] in ("SUCCEEDED", "FAILED", "STOPPED")
                    and j, timeout=60, what=f"job {sid} to end")


def test_a_job_runs_a_driver_on_this_cluster(dash: Dash, tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    sid = _submit(dash, {"entrypoint": "python script.py", "runtime_env": {"working_dir": str(tmp_path)},
                         "submission_id": "job_ok", "metadata": {"owner": "tests"}})
    assert sid == "job_ok"
    job = _ended(dash, sid)
    logs = dash.get_json(f"/api/jobs/{sid}/logs")["logs"]
    assert job["status"] == "SUCCEEDED", logs
    assert job["driver_exit_code"] == 0 and job["metadata"] == {"owner": "tests"}
    assert "doubled 90" in logs and f"cwd {tmp_path}" in logs
    log_file = Path(dash.session_dir) / "logs" / "job-job_ok.log"
    assert log_file.is_file() and "doubled 90" in log_file.read_text()
    # the job's driver joined this cluster: the GCS knows it, and its tasks are in the history
    drivers = dash.get_json("/api/v0/jobs")["drivers"]
    assert any("script.py" in d["entrypoint"] for d in drivers)
    wait_for(lambda: dash.get_json("/api/v0/tasks?name=double")["total"] == 10, what="the job's tasks")
    listed = dash.get_json("/api/jobs/")
    assert [j["submission_id"] for j in listed] == ["job_ok"]
    assert dash.get_json("/api/v0/jobs")["submissions"][0]["status"] == "SUCCEEDED"
    # the incremental log read (what `microray job logs --follow` uses)
    whole = dash.get_json(f"/api/jobs/{sid}/logs?offset=0")
    assert dash.get_json(f"/api/jobs/{sid}/logs?offset={whole['offset']}")["logs"] == ""


def test_a_failing_job_is_failed_with_its_exit_code(dash: Dash, tmp_path: Path) -> None:
    sid = _submit(dash, {"entrypoint": "echo about to fail; exit 3", "runtime_env": {"working_dir": str(tmp_path)}})
    job = _ended(dash, sid)
    assert job["status"] == "FAILED" and job["driver_exit_code"] == 3
    assert "about to fail" in dash.get_json(f"/api/jobs/{sid}/logs")["logs"]


def test_bad_job_requests(dash: Dash, tmp_path: Path) -> None:
    ok = {"entrypoint": "true", "runtime_env": {"working_dir": str(tmp_path)}}
    assert dash.post("/api/jobs/", {**ok, "entrypoint": ""}, token=dash.token).status == 400
    assert dash.post("/api/jobs/", {**ok, "runtime_env": {"working_dir": "relative/dir"}}, token=dash.token).status == 400
    assert dash.post("/api/jobs/", {**ok, "runtime_env": {"working_dir": str(tmp_path / "missing")}},
                     token=dash.token).status == 400
    assert dash.post("/api/jobs/", {**ok, "submission_id": "../x"}, token=dash.token).status == 400
    _submit(dash, {**ok, "submission_id": "dup"})
    assert dash.post("/api/jobs/", {**ok, "submission_id": "dup"}, token=dash.token).status == 409
    assert dash.get("/api/jobs/nope").status == 404
    assert dash.post("/api/jobs/nope/stop", token=dash.token).status == 404
    assert dash.request("POST", "/api/jobs/", body=None, token=dash.token).status == 400


def test_job_metrics(dash: Dash, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    # its own jobs, so that it passes alone or on another xdist worker than the tests above
    env = {"working_dir": str(tmp_path)}
    assert _ended(dash, _submit(dash, {"entrypoint": "true", "runtime_env": env}))["status"] == "SUCCEEDED"
    assert _ended(dash, _submit(dash, {"entrypoint": "exit 4", "runtime_env": env}))["status"] == "FAILED"
    text = dash.get("/metrics").body.decode()
    jobs = {s.labels["status"]: s.value for f in text_string_to_metric_families(text) if f.name == "microray_jobs"
            for s in f.samples}
    assert jobs.get("SUCCEEDED", 0) >= 1 and jobs.get("FAILED", 0) >= 1


def test_rays_job_api_shapes(dash: Dash, tmp_path: Path) -> None:
    """What Ray's job client reads (tests/dashboard/test_ray_job_client.py runs the real one):
    the version reply, integer-millisecond times, the exact submit/logs/delete replies."""
    version = dash.get_json("/api/version")
    assert version["version"] == "4" and version["ray_version"] >= "2.0"
    body = {"entrypoint": "echo shaped", "runtime_env": {"working_dir": str(tmp_path)}, "entrypoint_num_cpus": 0.5,
            "entrypoint_resources": {"custom": 1}}
    reply = dash.post("/api/jobs/", body, token=dash.token)
    assert reply.status == 200 and set(reply.json()) == {"job_id", "submission_id"}
    sid = reply.json()["submission_id"]
    job = _ended(dash, sid)
    assert isinstance(job["start_time"], int) and isinstance(job["end_time"], int)
    assert abs(job["start_time"] / 1000 - time.time()) < 3600
    assert job["entrypoint_num_cpus"] == 0.5 and job["entrypoint_resources"] == {"custom": 1}
    assert job["runtime_env"] == {"working_dir": str(tmp_path)} and job["type"] == "SUBMISSION"
    assert dash.get_json(f"/api/jobs/{sid}/logs") == {"logs": "shaped\n"}
    # the dashboard's own listing keeps seconds
    sub = next(s for s in dash.get_json("/api/v0/jobs")["submissions"] if s["submission_id"] == sid)
    assert abs(sub["start_time"] - job["start_time"] / 1000) < 0.01
    assert dash.request("DELETE", f"/api/jobs/{sid}").status == 401
    deleted = dash.request("DELETE", f"/api/jobs/{sid}", token=dash.token)
    assert deleted.status == 200 and deleted.json() == {"deleted": True}
    assert dash.get(f"/api/jobs/{sid}").status == 404
    assert dash.request("DELETE", f"/api/jobs/{sid}", token=dash.token).status == 404
    assert dash.post("/api/jobs/", {**body, "entrypoint_num_cpus": "two"}, token=dash.token).status == 400


def test_a_running_job_cannot_be_deleted(dash: Dash, tmp_path: Path) -> None:
    sid = _submit(dash, {"entrypoint": "sleep 300", "runtime_env": {"working_dir": str(tmp_path)}})
    wait_for(lambda: dash.get_json(f"/api/jobs/{sid}")["status"] == "RUNNING", what="the job to run")
    refused = dash.request("DELETE", f"/api/jobs/{sid}", token=dash.token)
    assert refused.status == 400 and "stop it first" in refused.json()["error"]
    assert dash.post(f"/api/jobs/{sid}/stop", token=dash.token).json() == {"stopped": True}
    assert _ended(dash, sid)["status"] == "STOPPED"
    assert dash.request("DELETE", f"/api/jobs/{sid}", token=dash.token).json() == {"deleted": True}
