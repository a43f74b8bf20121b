"""The dashboard's security model: the session token guards every mutating endpoint
(a request without it, or with a wrong one, is refused and changes nothing), no GET
response carries the token, the token file is private, log paths cannot escape the
logs folder, and a loopback dashboard ignores foreign Host headers."""

from __future__ import annotations

import socket
import stat
import time
from pathlib import Path

import pytest

import microray as ray

from .support import Dash, wait_for

GET_ENDPOINTS = [
    "/", "/static/core.js", "/static/views.js", "/static/app.js", "/static/style.css",
    "/api/v0/cluster", "/api/v0/timeseries", "/api/v0/nodes", "/api/v0/workers", "/api/v0/tasks?detail=1",
    "/api/v0/tasks/summary", "/api/v0/actors", "/api/v0/objects", "/api/v0/objects/summary",
    "/api/v0/placement_groups", "/api/v0/jobs", "/api/v0/logs", "/api/v0/plugins", "/metrics", "/api/jobs/",
]


def _refusals(dash: Dash, path: str, body: dict | None = None) -> None:
    """No token: 401; a wrong one: 403; a token in the query string does not count."""
    assert dash.post(path, body).status == 401
    assert dash.post(path, body, token="not-the-token").status == 403
    assert dash.post(path, body, headers={"X-Microray-Token": "wrong"}).status == 403
    assert dash.post(f"{path}?token={dash.token}", body).status == 401


def test_token_file_is_private(dash: Dash) -> None:
    path = Path(dash.session_dir) / "cluster_token"  # the dashboard demands the cluster token
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert len(dash.token) >= 32 and path.read_text().strip() == dash.token


def test_kill_actor_needs_the_token(dash: Dash) -> None:
    counter = dash.refs["counter"]
    actor_id = dash.get_json("/api/v0/actors?name=dash_counter")["actors"][0]["actor_id"]
    _refusals(dash, f"/api/v0/actors/{actor_id}/kill")
    assert ray.get(counter.incr.remote()) >= 2  # still alive and serving
    assert dash.get_json(f"/api/v0/actors/{actor_id}")["state"] == "ALIVE"


def test_cancel_task_needs_the_token(dash: Dash) -> None:
    @ray.remote
    def slow() -> int:
        for _ in range(300):
            time.sleep(0.1)
        return 7

    ref = slow.remote()
    task_id = ref.task_id().hex()
    wait_for(lambda: dash.get_json(f"/api/v0/tasks?task_id={task_id}&state=RUNNING")["total"] == 1,
             what="the task to run")
    _refusals(dash, f"/api/v0/tasks/{task_id}/cancel")
    time.sleep(0.3)
    assert dash.get_json(f"/api/v0/tasks/{task_id}")["state"] == "RUNNING"
    ready, _ = ray.wait([ref], timeout=0.5)
    assert not ready
    assert dash.post(f"/api/v0/tasks/{task_id}/cancel", token=dash.token).json()["cancelled"] is True


def test_job_submit_needs_the_token(dash: Dash, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    body = {"entrypoint": f"touch {marker}", "runtime_env": {"working_dir": str(tmp_path)}}
    _refusals(dash, "/api/jobs/", body)
    assert dash.get_json("/api/jobs/") == []
    assert not list((Path(dash.session_dir) / "logs").glob("job-*.log"))
    time.sleep(0.3)
    assert not marker.exists()


def test_job_stop_needs_the_token(dash: Dash, tmp_path: Path) -> None:
    reply = dash.post("/api/jobs/", {"entrypoint": "sleep 30", "runtime_env": {"working_dir": str(tmp_path)}},
                      headers={"X-Microray-Token": dash.token})
    assert reply.status == 200, reply.body
    sid = reply.json()["submission_id"]
    try:
        _refusals(dash, f"/api/jobs/{sid}/stop")
        time.sleep(0.5)
        assert dash.get_json(f"/api/jobs/{sid}")["status"] == "RUNNING"
    finally:
        assert dash.post(f"/api/jobs/{sid}/stop", token=dash.token).json()["stopped"] is True
    wait_for(lambda: dash.get_json(f"/api/jobs/{sid}")["status"] == "STOPPED", what="the job to stop")


def test_get_responses_never_contain_the_token(dash: Dash) -> None:
    paths = list(GET_ENDPOINTS)
    paths += [f"/api/v0/logs/{f['name']}?lines=10000" for f in dash.get_json("/api/v0/logs")["files"]]
    task_id = dash.get_json("/api/v0/tasks?limit=1")["tasks"][0]["task_id"]
    paths.append(f"/api/v0/tasks/{task_id}")
    for path in paths:
        reply = dash.get(path)
        assert reply.status == 200, (path, reply.status)
        assert dash.token.encode() not in reply.body, path
        assert dash.token not in repr(reply.headers), path


@pytest.mark.parametrize("path", [
    "/api/v0/logs/..%2Fsecret.txt",
    "/api/v0/logs/%2E%2E%2Fsecret.txt",
    "/api/v0/logs/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/v0/logs/..",
    "/api/v0/logs/.hidden",
    "/api/v0/logs/link.log",
    "/api/v0/logs/../secret.txt",
    "/api/v0/logs/..%5Csecret.txt",
])
def test_logs_refuse_paths_outside_the_logs_folder(dash: Dash, path: str) -> None:
    session = Path(dash.session_dir)
    (session / "secret.txt").write_text("TOP-SECRET\n")
    (session / "logs" / ".hidden").write_text("TOP-SECRET\n")
    link = session / "logs" / "link.log"
    if not link.is_symlink():
        link.symlink_to(session / "secret.txt")
    reply = dash.get(path)
    assert reply.status in (400, 404), (path, reply.status)
    assert b"TOP-SECRET" not in reply.body and b"root:" not in reply.body


def test_static_files_do_not_escape(dash: Dash) -> None:
    for path in ("/static/..%2Fserver.py", "/static/%2E%2E/server.py", "/static/../server.py"):
        reply = dash.get(path)
        assert reply.status in (400, 403, 404), path
        assert b"WebDashboard" not in reply.body


def test_foreign_host_header_is_refused(dash: Dash) -> None:
    assert dash.get("/api/v0/cluster", headers={"Host": "evil.example:8265"}).status == 421
    assert dash.get("/api/v0/cluster", headers={"Host": "localhost"}).status == 200


def test_pages_carry_strict_headers(dash: Dash) -> None:
    reply = dash.get("/")
    assert "default-src 'self'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["Referrer-Policy"] == "no-referrer"
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert "Access-Control-Allow-Origin" not in reply.headers


def test_a_taken_port_moves_to_the_next_free_one() -> None:
    from microray import node

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        sock = node._dashboard_socket("127.0.0.1", port)
        try:
            got = sock.getsockname()[1]
            assert got != port and port < got <= port + 100
        finally:
            sock.close()


def test_init_prints_the_url_but_never_the_token(dash: Dash) -> None:
    assert f"Dashboard: {dash.url} (" in dash.init_stderr and "microray token" in dash.init_stderr
    assert dash.token and dash.token not in dash.init_stderr
