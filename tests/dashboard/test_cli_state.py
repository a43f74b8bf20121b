"""The state CLI against a ``microray start --head`` cluster (own session root, always
``microray stop``-ped): list, get, summary, status, memory, timeline, logs and job.

A driver process stays connected during the tests, so its objects and its pending
(infeasible) task are live state, not leftovers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from microray.cli import cli

from microray.testing.processes import read_marker

from .support import wait_for

DRIVER = textwrap.dedent("""
    import sys, time
    import microray as ray

    ray.init(address="auto")

    @ray.remote
    def f(x):
        return x + 1

    @ray.remote
    def boom():
        raise ValueError("cli boom")

    @ray.remote
    class Holder:
        def hold(self):
            self.ref = ray.put(b"y" * 200_000)
            return self.ref.hex()

    assert ray.get([f.remote(i) for i in range(5)]) == [1, 2, 3, 4, 5]
    try:
        ray.get(boom.remote())
    except Exception:
        pass
    holder = Holder.options(name="cli_actor").remote()
    held = ray.get(holder.hold.remote())
    blob = ray.put(b"z" * 150_000)
    stuck = f.options(num_gpus=1).remote(0)  # infeasible on this node: a pending demand
    print(json.dumps({"blob": blob.hex(), "held": held}), flush=True)
    sys.stdin.read()  # stay connected until the test closes stdin
""").replace("import sys, time", "import json, sys, time")


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("sessions")
    env = {**os.environ, "MICRORAY_SESSION_ROOT": str(root), "MICRORAY_DASHBOARD_PORT": "0"}
    env.pop("MICRORAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "microray.cli"]
    started = subprocess.run([*cmd, "start", "--head", "--dashboard", "web", "--num-cpus", "2"],
                             env=env, capture_output=True, text=True, timeout=120)
    driver = None
    try:
        assert started.returncode == 0, started.stderr
        assert "Dashboard: http://127.0.0.1:" in started.stdout and "microray token" in started.stdout
        driver = subprocess.Popen([sys.executable, "-c", DRIVER], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = driver.stdout.readline()
        assert line, driver.stderr.read()
        info = json.loads(line)
        info.update(env=env, root=root, driver_pid=driver.pid)
        runner = CliRunner()

        def run(*args: str, code: int = 0) -> str:
            result = runner.invoke(cli, list(args), env={"MICRORAY_SESSION_ROOT": str(root), "COLUMNS": "250"},
                                   catch_exceptions=False)
            assert result.exit_code == code, (args, result.output)
            return result.output

        info["run"] = run
        def recorded() -> bool:
            tasks = json.loads(run("list", "tasks", "--format", "json"))
            states = [(t["name"], t["state"], t.get("required_resources", {}).get("GPU")) for t in tasks]
            return (states.count(("f", "FINISHED", None)) == 5 and ("boom", "FAILED", None) in states
                    and ("Holder.hold", "FINISHED", None) in states and ("f", "PENDING_NODE_ASSIGNMENT", 1.0) in states)

        wait_for(recorded, what="the driver's tasks in the history")
        yield info
    finally:
        if driver is not None:
            driver.stdin.close()
            driver.wait(timeout=30)
        subprocess.run([*cmd, "stop"], env=env, capture_output=True, timeout=60)


def test_list_with_filters_limits_and_formats(head: Any) -> None:
    run = head["run"]
    tasks = json.loads(run("list", "tasks", "--filter", "name=f", "--format", "json"))
    assert len([t for t in tasks if t["state"] == "FINISHED"]) == 5
    failed = json.loads(run("list", "tasks", "--filter", "state=FAILED", "--format", "json"))
    assert [t["name"] for t in failed] == ["boom"]
    assert len(json.loads(run("list", "tasks", "--limit", "2", "--format", "json"))) == 2
    not_f = json.loads(run("list", "tasks", "--filter", "name!=f", "--format", "json"))
    assert not_f and all(t["name"] != "f" for t in not_f)
    table = run("list", "actors")
    assert "cli_actor" in table and "ALIVE" in table and "CLASS_NAME" in table
    nodes = json.loads(run("list", "nodes", "--format", "json"))
    assert len(nodes) == 1 and nodes[0]["state"] == "ALIVE"
    workers = json.loads(run("list", "workers", "--filter", "worker_type=DRIVER", "--format", "json"))
    assert head["driver_pid"] in [w["pid"] for w in workers]
    assert "RUNNING" in run("list", "jobs")
    assert json.loads(run("list", "placement-groups", "--format", "json")) == []
    assert "--filter expects" in run("list", "tasks", "--filter", "oops", code=2)


def test_get_one_of_each(head: Any) -> None:
    run = head["run"]
    actor = json.loads(run("list", "actors", "--format", "json"))[0]
    got = json.loads(run("get", "actors", actor["actor_id"]))
    assert got["name"] == "cli_actor" and got["class_name"] == "Holder"
    task = json.loads(run("list", "tasks", "--filter", "state=FAILED", "--format", "json"))[0]
    detail = json.loads(run("get", "tasks", task["task_id"]))
    assert "cli boom" in detail["error_message"] and detail["events"]
    assert "no node with id" in run("get", "nodes", "nope", code=1)


def test_summary(head: Any) -> None:
    run = head["run"]
    tasks = json.loads(run("summary", "tasks", "--format", "json"))
    assert tasks["summary"]["f"]["state_counts"]["FINISHED"] == 5
    assert tasks["summary"]["boom"]["state_counts"]["FAILED"] == 1
    table = run("summary", "tasks")
    assert "FUNC_OR_CLASS_NAME" in table and "boom" in table
    assert "Holder" in run("summary", "actors")
    objects = json.loads(run("summary", "objects", "--format", "json"))
    assert objects["total_objects"] >= 2 and objects["total_size_bytes"] >= 350_000


def test_status_shows_nodes_resources_and_demands(head: Any) -> None:
    out = head["run"]("status")
    assert "Alive:" in out and "(head)" in out
    assert "/2 CPU" in out and "object_store_memory" in out
    assert '{"CPU": 1.0, "GPU": 1.0} (task): 1+ pending' in out, out


def test_memory_groups_objects_by_owner(head: Any) -> None:
    run = head["run"]
    out = run("memory")
    assert head["blob"] in out and head["held"] in out
    assert f"owner pid {head['driver_pid']}" in out
    assert "Object store:" in out and "objects referenced" in out
    by_node = run("memory", "--group-by", "node")
    assert "node " in by_node and head["blob"] in by_node


def test_timeline_writes_a_chrome_trace(head: Any, tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    assert "written to" in head["run"]("timeline", "--output", str(out))
    events = json.loads(out.read_text())
    names = [e["name"] for e in events]
    assert names.count("f") == 5 and "boom" in names
    for e in events:
        assert e["ph"] == "X" and e["dur"] >= 0 and e["pid"].startswith("node ") and e["tid"].startswith("worker ")
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)


def test_logs(head: Any) -> None:
    run = head["run"]
    listing = run("logs")
    # the dashboard starts on demand: its JSON log appears with its first page; its
    # stderr file is there from the start
    assert "gcs.log" in listing and "dashboard.err" in listing
    tail = run("logs", "gcs.log", "--tail", "1").strip().splitlines()
    assert len(tail) == 1 and tail[0].startswith("{")
    assert "no log file" in run("logs", "../address.json", code=1)
    assert "no worker or driver with pid" in run("logs", "--pid", "999999999", code=1)
    assert "microray_started" in run("logs", "--pid", str(head["driver_pid"]))
    actor = json.loads(run("list", "actors", "--format", "json"))[0]
    worker_logs = run("logs", "--pid", str(actor["pid"]))
    assert "==> worker-" in worker_logs
    node_id = json.loads(run("list", "nodes", "--format", "json"))[0]["node_id"]
    assert "raylet-" in run("logs", "--node", node_id[:8])
    assert "not this machine's node" in run("logs", "--node", "ffffffff", code=1)


def test_logs_in_rays_forms_and_follow(head: Any) -> None:
    run = head["run"]
    actor = json.loads(run("list", "actors", "--format", "json"))[0]
    assert "==> worker-" in run("logs", "actor", "--id", actor["actor_id"])
    assert "no actor with id" in run("logs", "actor", "--id", "ffff", code=1)
    assert "needs --id" in run("logs", "actor", code=2)
    task = json.loads(run("list", "tasks", "--filter", "name=Holder.hold", "--format", "json"))[0]
    assert "==> worker-" in run("logs", "task", "--id", task["task_id"])
    worker = json.loads(run("list", "workers", "--filter", "worker_type=worker", "--format", "json"))[0]
    assert "==> worker-" in run("logs", "worker", "--id", worker["worker_id"])
    assert run("logs", "cluster", "gcs.log", "--tail", "1").strip().startswith("{")
    logs = Path(run("logs").splitlines()[0].removeprefix("Log files in ").rstrip(":"))
    watched = logs / "follow-me.log"
    watched.write_text("before\n")
    follower = subprocess.Popen([sys.executable, "-m", "microray.cli", "logs", "follow-me.log", "--follow"],
                                env=head["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        read_marker(follower, "before", timeout=60)
        with watched.open("a") as f:
            f.write("appended later\n")
        read_marker(follower, "appended later", timeout=60)
    finally:
        follower.kill()
        follower.communicate(timeout=30)
        watched.unlink()


def test_lowercase_enum_filters_and_yaml(head: Any) -> None:
    import yaml

    run = head["run"]
    failed = json.loads(run("list", "tasks", "--filter", "state=failed", "--format", "json"))
    assert [t["name"] for t in failed] == ["boom"]
    assert yaml.safe_load(run("list", "tasks", "--filter", "state=Failed", "--format", "yaml"))[0]["name"] == "boom"
    out = run("list", "tasks", "--filter", "nme=boom", code=2)
    assert "valid keys" in out and "0 tasks" not in out


def test_job_submit_status_logs_stop_list(head: Any, tmp_path: Path) -> None:
    run = head["run"]
    (tmp_path / "job.py").write_text("import microray as ray\nray.init()\n"
                                     "print('job says', ray.get(ray.put(20)) + 22)\n")
    out = run("job", "submit", "--working-dir", str(tmp_path), "--submission-id", "cli_job", "--",
              "python", "job.py")
    assert "job says 42" in out
    assert "SUCCEEDED" in run("job", "status", "cli_job")
    assert "job says 42" in run("job", "logs", "cli_job")
    assert "job says 42" in run("logs", "job", "--id", "cli_job")
    sid = run("job", "submit", "--no-wait", "--working-dir", str(tmp_path), "--", "sleep", "30").strip().splitlines()[-1]
    assert "RUNNING" in run("job", "status", sid)
    assert "stopped" in run("job", "stop", sid)
    assert "STOPPED" in run("job", "status", sid)
    listed = json.loads(run("job", "list", "--format", "json"))
    assert {j["submission_id"]: j["status"] for j in listed} == {"cli_job": "SUCCEEDED", sid: "STOPPED"}
    assert "failed" in run("job", "submit", "--working-dir", str(tmp_path), "--", "exit 4", code=1).lower()
    assert "401" not in run("job", "list")  # the token came from the session folder
    assert "403" in run("job", "stop", sid, "--token", "wrong", code=1)


def test_ctrl_c_in_job_submit_says_the_job_keeps_running(head: Any, tmp_path: Path) -> None:
    import signal

    run = head["run"]
    proc = subprocess.Popen([sys.executable, "-m", "microray.cli", "job", "submit", "--working-dir", str(tmp_path),
                             "--submission-id", "ctrl_c_job", "--", "sleep", "60"],
                            env=head["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        read_marker(proc, "Job 'ctrl_c_job' submitted", timeout=60, stream=proc.stderr)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "keeps running" in err and "microray job stop ctrl_c_job" in err, err
    assert "Traceback" not in err
    assert "RUNNING" in run("job", "status", "ctrl_c_job")
    run("job", "stop", "ctrl_c_job")
    assert "deleted" in run("job", "delete", "ctrl_c_job")  # stopped: it can go


def test_job_delete_and_entrypoint_resources(head: Any, tmp_path: Path) -> None:
    run = head["run"]
    run("job", "submit", "--working-dir", str(tmp_path), "--submission-id", "res_job", "--entrypoint-num-cpus", "1",
        "--entrypoint-resources", '{"disk": 2}', "--", "true")
    listed = {j["submission_id"]: j for j in json.loads(run("job", "list", "--format", "json"))}
    assert listed["res_job"]["status"] == "SUCCEEDED"
    assert "deleted" in run("job", "delete", "res_job")
    assert "res_job" not in {j["submission_id"] for j in json.loads(run("job", "list", "--format", "json"))}
    assert "404" in run("job", "delete", "res_job", code=1)


def test_job_log_has_its_tasks_output(head: Any, tmp_path: Path) -> None:
    run = head["run"]
    (tmp_path / "job.py").write_text(
        "import microray as ray\nray.init()\n\n@ray.remote\ndef shout():\n    print('task says hi', flush=True)\n\n"
        "ray.get(shout.remote())\n")
    run("job", "submit", "--working-dir", str(tmp_path), "--submission-id", "printing_job", "--", "python", "job.py")
    logs = run("job", "logs", "printing_job")
    assert any(line.startswith("(shout pid=") and line.endswith(") task says hi") for line in logs.splitlines()), logs


def test_list_cluster_events_and_runtime_envs(head: Any, tmp_path: Path) -> None:
    run = head["run"]
    events = json.loads(run("list", "cluster-events", "--format", "json"))
    types = [e["type"] for e in events]
    assert "NODE_ADDED" in types and "JOB_STARTED" in types, events
    assert events == sorted(events, key=lambda e: -e["time"])  # newest first
    added = json.loads(run("list", "cluster-events", "--filter", "type=node_added", "--format", "json"))
    assert added and all(e["type"] == "NODE_ADDED" for e in added)
    assert "NODE_ADDED" in run("list", "cluster-events")
    (tmp_path / "env_job.py").write_text("print('ok')\n")
    run("job", "submit", "--working-dir", str(tmp_path), "--", "python", "env_job.py")
    envs = json.loads(run("list", "runtime-envs", "--format", "json"))
    assert envs and all(e["uri"].startswith("gcs://") and e["size"] > 0 for e in envs), envs
