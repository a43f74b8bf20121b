"""The ``/api/v0`` state API of the ``web`` dashboard against a real cluster: each
endpoint returns the tasks, actors, objects, nodes and files the test made."""

from __future__ import annotations

import os

import pytest

import microray as ray

from .support import N_TASKS, Dash, square, wait_for


def test_init_returns_the_dashboard_url(dash: Dash) -> None:
    assert dash.url.startswith("http://127.0.0.1:")
    assert f"http://{dash.context.dashboard_url}" == dash.url  # host:port, as Ray's RayContext gives it
    assert dash.token not in dash.url


def test_cluster_summary_counts_the_workload(dash: Dash) -> None:
    c = dash.get_json("/api/v0/cluster")
    assert c["nodes"] == {"alive": 1, "dead": 0}
    assert c["resources"]["CPU"]["total"] == 2.0
    assert c["tasks"]["counts"]["FINISHED"] >= N_TASKS + 1  # the squares and the actor call
    assert c["tasks"]["counts"]["FAILED"] >= 1
    assert c["actors"]["by_state"].get("ALIVE", 0) >= 1
    assert c["object_store"]["capacity"] > 0


def test_timeseries_samples_every_period(dash: Dash) -> None:
    # the GCS samples every second; the workload's task events reach it within one flush
    data = wait_for(lambda: (d := dash.get_json("/api/v0/timeseries")) and len(d["samples"]) >= 2
                    and d["samples"][-1]["finished_total"] >= N_TASKS and d, what="two samples after the workload")
    s = data["samples"][-1]
    for key in ("time", "tasks_per_s", "running", "pending", "finished_total", "store_used", "cpu_total"):
        assert key in s
    assert s["cpu_total"] == 2.0
    assert data["period_s"] == 1.0 and data["capacity"] == 600
    older, newest = data["samples"][-2]["time"], data["samples"][-1]["time"]
    later = dash.get_json(f"/api/v0/timeseries?since={older}")["samples"]
    assert later and later[0]["time"] == newest and all(x["time"] > older for x in later)


def test_nodes_show_resources_and_processes(dash: Dash) -> None:
    data = dash.get_json("/api/v0/nodes")
    assert data["total"] == 1
    n = data["nodes"][0]
    assert n["state"] == "ALIVE" and n["is_head_node"]
    assert n["resources_total"]["CPU"] == 2.0
    assert n["heartbeat_age_s"] is not None and n["heartbeat_age_s"] < 30
    drivers = [w for w in n["workers"] if w["worker_type"] == "DRIVER"]
    assert os.getpid() in [w["pid"] for w in drivers]
    assert dash.get_json(f"/api/v0/nodes/{n['node_id']}")["node_id"] == n["node_id"]
    assert dash.get("/api/v0/nodes/nope").status == 404
    workers = dash.get_json("/api/v0/workers?worker_type=WORKER")["workers"]
    assert workers and all(w["worker_type"] == "WORKER" for w in workers)


def test_tasks_filter_and_page_in_the_gcs(dash: Dash) -> None:
    failed = dash.get_json("/api/v0/tasks?state=FAILED")
    assert [t["name"] for t in failed["tasks"]] == ["explode"]
    assert failed["counts"]["FINISHED"] >= N_TASKS
    squares = dash.get_json("/api/v0/tasks?name=square")
    assert squares["total"] == N_TASKS
    assert all("events" not in t for t in squares["tasks"])
    page1 = dash.get_json("/api/v0/tasks?name=square&limit=5&offset=0")
    page2 = dash.get_json("/api/v0/tasks?name=square&limit=5&offset=5")
    ids1 = {t["task_id"] for t in page1["tasks"]}
    ids2 = {t["task_id"] for t in page2["tasks"]}
    assert len(ids1) == len(ids2) == 5 and not ids1 & ids2
    assert page1["total"] == N_TASKS
    job = ray.get_runtime_context().get_job_id()
    assert dash.get_json(f"/api/v0/tasks?job_id={job}&name=square")["total"] == N_TASKS
    assert dash.get_json("/api/v0/tasks?filter=name!=square&state=FINISHED")["tasks"][0]["name"] != "square"
    assert dash.get("/api/v0/tasks?limit=abc").status == 400
    assert dash.get("/api/v0/tasks?filter=bad").status == 400
    assert dash.get("/api/v0/tasks?filter=nme=square").status == 400  # an unknown key is an error, not 0 rows
    assert dash.get_json("/api/v0/tasks?filter=state=finished")["total"] >= N_TASKS  # any case


def test_task_detail_has_error_timings_and_events(dash: Dash) -> None:
    task_id = dash.get_json("/api/v0/tasks?state=FAILED")["tasks"][0]["task_id"]
    t = dash.get_json(f"/api/v0/tasks/{task_id}")
    assert t["state"] == "FAILED" and t["name"] == "explode"
    assert t["error_type"] in ("ValueError", "RayTaskError", "RayTaskError(ValueError)")
    assert "kaboom from the dashboard test" in t["error_message"]
    assert [e["state"] for e in t["events"]][-1] == "FAILED"
    assert t["submit_time"] <= t["start_time"] <= t["end_time"]
    assert t["node_id"] and t["worker_pid"] and t["run_s"] >= 0
    sq = dash.get_json("/api/v0/tasks?name=square&limit=1")["tasks"][0]
    detail = dash.get_json(f"/api/v0/tasks/{sq['task_id']}")
    assert detail["args_summary"] and detail["attempt"] == 0
    assert dash.get("/api/v0/tasks/" + "0" * 32).status == 404


def test_tasks_summary_groups_by_name(dash: Dash) -> None:
    s = dash.get_json("/api/v0/tasks/summary")
    assert s["summary"]["square"]["state_counts"]["FINISHED"] == N_TASKS
    assert s["summary"]["explode"]["state_counts"]["FAILED"] == 1


def test_actors_list_filter_and_detail(dash: Dash) -> None:
    actors = dash.get_json("/api/v0/actors?name=dash_counter")["actors"]
    assert len(actors) == 1
    a = actors[0]
    assert a["class_name"] == "Counter" and a["state"] == "ALIVE" and a["pid"] > 0
    assert a["namespace"] == ray.get_runtime_context().namespace
    assert dash.get_json(f"/api/v0/actors/{a['actor_id']}")["name"] == "dash_counter"
    assert dash.get_json("/api/v0/actors?state=DEAD&name=dash_counter")["total"] == 0
    assert dash.get("/api/v0/actors/" + "f" * 32).status == 404


def test_objects_show_owner_size_and_location(dash: Dash) -> None:
    blob = dash.refs["blob"].hex()
    objs = dash.get_json("/api/v0/objects")["objects"]
    mine = [o for o in objs if o["object_id"] == blob]
    assert len(mine) == 1
    o = mine[0]
    assert o["object_size"] >= 300_000 and o["owner_pid"] == os.getpid()
    assert o["location"] == "IN_STORE" and "LOCAL_REFERENCE" in o["reference_type"]
    s = dash.get_json("/api/v0/objects/summary")
    assert s["total_objects"] >= 1 and s["total_size_bytes"] >= 300_000


def test_placement_groups_is_an_empty_list_with_a_note(dash: Dash) -> None:
    data = dash.get_json("/api/v0/placement_groups")
    assert data["placement_groups"] == [] and data["note"]


def test_jobs_list_the_driver(dash: Dash) -> None:
    data = dash.get_json("/api/v0/jobs")
    job = ray.get_runtime_context().get_job_id()
    mine = [j for j in data["drivers"] if j["job_id"] == job]
    assert mine and mine[0]["status"] == "RUNNING" and mine[0]["driver_pid"] == os.getpid()


def test_logs_list_and_tail(dash: Dash) -> None:
    files = {f["name"]: f for f in dash.get_json("/api/v0/logs")["files"]}
    assert "gcs.log" in files and files["gcs.log"]["kind"] == "gcs"
    assert any(n.startswith("raylet-") for n in files)
    tail = dash.get_json("/api/v0/logs/gcs.log?lines=2")
    assert 1 <= len(tail["lines"]) <= 2 and "gcs_started" in "".join(dash.get_json("/api/v0/logs/gcs.log?lines=1000")["lines"])
    assert dash.get("/api/v0/logs/no-such-file.log").status == 404
    node_id = dash.get_json("/api/v0/nodes")["nodes"][0]["node_id"]
    assert dash.get(f"/api/v0/logs?node_id={node_id}").status == 200
    assert dash.get("/api/v0/logs?node_id=elsewhere").status == 404


def test_plugins_and_config(dash: Dash) -> None:
    data = dash.get_json("/api/v0/plugins")
    fams = {f["family"]: f for f in data["families"]}
    assert set(fams) >= {"gcs_store", "object_store", "scheduling_policy", "dashboard"}
    assert fams["dashboard"]["selected"] == "web"
    assert {b["name"]: b["selected"] for b in fams["dashboard"]["backends"]} == {"web": True, "none": False}
    assert fams["gcs_store"]["selected"] == "memory"
    assert data["config"]["task_history_cap"] > 0 and data["config"]["dashboard"] == "web"


def test_redact_masks_secrets() -> None:
    from microray.plugins.dashboard.web.api import redact

    cfg = {"gcs_store_options": {"url": "redis://user:hunter2@host:6379/0", "password": "hunter2", "db": 0},
           "dashboard_port": 8265, "object_store_options": {"path": "/x"}}
    out = redact(cfg)
    assert "hunter2" not in repr(out)
    assert out["gcs_store_options"]["url"] == "redis://user:***@host:6379/0"
    assert out["gcs_store_options"]["db"] == 0 and out["dashboard_port"] == 8265


def test_metrics_parse_and_count_tasks(dash: Dash) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    reply = dash.get("/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    samples: dict[tuple[str, tuple], float] = {}
    names = set()
    for fam in text_string_to_metric_families(reply.body.decode()):
        names.add(fam.name)
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("microray_tasks", (("state", "FINISHED"),))] >= N_TASKS + 1
    assert samples[("microray_tasks", (("state", "FAILED"),))] >= 1
    assert samples[("microray_nodes", (("state", "ALIVE"),))] == 1
    assert samples[("microray_actors", (("state", "ALIVE"),))] >= 1
    node_id = dash.get_json("/api/v0/nodes")["nodes"][0]["node_id"]
    assert samples[("microray_node_resource_total", (("node_id", node_id), ("resource", "CPU")))] == 2.0
    assert samples[("microray_object_store_capacity_bytes", (("node_id", node_id),))] > 0
    assert samples[("microray_object_store_used_bytes", (("node_id", node_id),))] >= 0
    assert ("microray_dashboard_gcs_rpc_seconds_count", (("method", "GetTaskEvents"),)) in samples
    assert {"microray_dashboard_http_request_seconds", "microray_drivers", "microray_jobs"} <= names


def test_cancel_a_running_task_with_the_token(dash: Dash) -> None:
    import time

    @ray.remote
    def slow() -> None:
        for _ in range(600):  # short sleeps: a cancel is delivered between bytecodes
            time.sleep(0.1)

    ref = slow.remote()
    task_id = ref.task_id().hex()
    wait_for(lambda: dash.get_json(f"/api/v0/tasks?task_id={task_id}&state=RUNNING")["total"] == 1,
             what="the slow task to run")
    reply = dash.post(f"/api/v0/tasks/{task_id}/cancel", token=dash.token)
    assert reply.status == 200 and reply.json()["cancelled"] is True
    from microray.exceptions import TaskCancelledError

    with pytest.raises(TaskCancelledError):  # the cancelled task returns no value
        ray.get(ref, timeout=30)
    wait_for(lambda: dash.get_json(f"/api/v0/tasks/{task_id}")["state"] in ("CANCELLED", "FAILED"),
             what="the task to end")
    again = dash.post(f"/api/v0/tasks/{task_id}/cancel", token=dash.token)
    assert again.status == 409


def test_cancel_a_pending_task_through_its_owner(dash: Dash) -> None:
    from microray.exceptions import TaskCancelledError

    ref = square.options(num_gpus=1).remote(3)  # no GPU here: it pends in its owner
    task_id = ref.task_id().hex()
    wait_for(lambda: dash.get_json(f"/api/v0/tasks?task_id={task_id}&state=PENDING_NODE_ASSIGNMENT")["total"] == 1,
             what="the pending task in the history")
    reply = dash.post(f"/api/v0/tasks/{task_id}/cancel", token=dash.token)
    assert reply.status == 200 and reply.json()["cancelled"] is True
    with pytest.raises(TaskCancelledError):  # the cancelled task returns no value
        ray.get(ref, timeout=30)
    wait_for(lambda: dash.get_json(f"/api/v0/tasks/{task_id}")["state"] == "CANCELLED", what="CANCELLED recorded")


def test_actor_tasks_name_the_node_and_worker_they_ran_on(dash: Dash) -> None:
    actor = dash.get_json("/api/v0/actors?name=dash_counter")["actors"][0]
    calls = dash.get_json("/api/v0/tasks?name=Counter.incr&state=FINISHED")["tasks"]
    assert calls and all(t["node_id"] == actor["node_id"] and t["worker_pid"] == actor["pid"] for t in calls)
    assert all(t["worker_id"] for t in calls)


def test_nodes_carry_their_hosts_figures(dash: Dash) -> None:
    host = wait_for(lambda: dash.get_json("/api/v0/nodes")["nodes"][0]["host"], what="the host figures")
    assert 0 <= host["cpu_percent"] <= 100 and host["cpu_count"] >= 1
    assert 0 < host["mem_used"] <= host["mem_total"]
    assert 0 < host["disk_used"] <= host["disk_total"] and host["disk_path"].startswith(dash.session_dir)


def test_timeline_is_a_chrome_trace_of_the_ended_tasks(dash: Dash) -> None:
    data = dash.get_json("/api/v0/timeline")
    events = data["traceEvents"]
    squares = [e for e in events if e["name"] == "square"]
    assert len(squares) == N_TASKS and all(e["ph"] == "X" and e["dur"] >= 0 for e in squares)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert {e["args"]["state"] for e in events if e["name"] == "explode"} == {"FAILED"}
    assert data["otherData"]["tasks_shown"] == len(events)
    few = dash.get_json("/api/v0/timeline?limit=3")
    assert len(few["traceEvents"]) == 3 and few["otherData"]["tasks_ended"] >= N_TASKS + 2


def test_a_drivers_job_page_lists_its_tasks_and_actors(dash: Dash) -> None:
    job_id = dash.get_json("/api/v0/tasks?name=square")["tasks"][0]["job_id"]
    data = dash.get_json(f"/api/v0/jobs/{job_id}")
    assert data["submission"] is None and data["job_ids"] == [job_id]
    assert {t["name"] for t in data["tasks"]} >= {"square", "explode", "Counter.incr"}
    assert "dash_counter" in [a["name"] for a in data["actors"]]
    assert dash.get("/api/v0/jobs/nope").status == 404
