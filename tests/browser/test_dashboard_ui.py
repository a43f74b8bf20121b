"""The web dashboard in a real browser (Debian's Chromium driven by Playwright for
Python; never ``playwright install``): each view shows the cluster's tasks, actors,
objects, jobs, logs and plugins; the chart draws; filters work; an actor is killed
from the UI with the session token. A screenshot of each view goes to
``test-artifacts/dashboard/``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import microray as ray
from dashboard.support import N_TASKS, Dash, wait_for

pytestmark = pytest.mark.slow  # chaos, browser, real-server and heavy-I/O tests: not in `tox -e fast`

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
TIMEOUT_MS = 20_000

if not Path(CHROMIUM).exists():  # .ci/run installs it; a dev box without it skips
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)




@pytest.fixture(scope="module")
def browser() -> Any:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def page(browser: Any, dash: Dash) -> Any:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(f"{dash.url}/?token={dash.token}")
    pg.errors = errors  # type: ignore[attr-defined]
    yield pg
    ctx.close()
    assert not errors, errors


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def goto(page: Any, dash: Dash, view: str) -> None:
    page.goto(f"{dash.url}/#/{view}")
    page.wait_for_selector("#conn:has-text('live')")


def test_the_login_url_hands_the_token_to_the_page_only(page: Any, dash: Dash) -> None:
    page.wait_for_selector("#auth:has-text('Actions enabled')")
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('microray_token')") == dash.token
    assert dash.token not in page.content()


def test_overview_shows_counts_and_draws_the_chart(page: Any, dash: Dash) -> None:
    goto(page, dash, "overview")
    finished = page.locator(".count[data-state='FINISHED']")
    assert int(finished.inner_text().replace(",", "")) >= N_TASKS
    assert page.locator(".stat:has-text('Nodes') .stat-value").inner_text() == "1"
    # the tasks/s series has several sampled points drawn as one path
    path = page.locator("svg.chart path[data-series='tasks/s']")
    wait_for(lambda: path.count() == 1 and int(path.get_attribute("data-points")) >= 3, what="three samples drawn")
    d = path.get_attribute("d")
    assert d.startswith("M") and d.count("L") >= 2
    assert re.fullmatch(r"M[\d.]+,[\d.]+( L[\d.]+,[\d.]+)+", d)
    assert "tasks/s" in page.locator("svg.chart").first.get_attribute("aria-label")
    shot(page, "overview")


def test_nodes_view(page: Any, dash: Dash) -> None:
    goto(page, dash, "nodes")
    node = page.locator("article.node")
    wait_for(lambda: node.count() == 1, what="the node card")
    text = node.inner_text()
    assert "ALIVE" in text and "head" in text and "DRIVER" in text
    assert page.locator("meter").count() >= 2
    shot(page, "nodes")


def test_tasks_view_filters_by_state_and_name(page: Any, dash: Dash) -> None:
    goto(page, dash, "tasks")
    rows = page.locator("table.data tbody tr[data-state]")
    wait_for(lambda: rows.count() >= N_TASKS, what="task rows")
    page.select_option("#f-state", "FAILED")
    wait_for(lambda: page.locator("table.data tbody tr[data-state]").count() == 1
             and page.locator("tr[data-state='FAILED'][data-name='explode']").count() == 1, what="only the failed task")
    page.select_option("#f-state", "")
    page.fill("#f-name", "square")
    page.click("form.filters button[type=submit]")
    wait_for(lambda: page.locator("tr[data-name='square']").count() == N_TASKS
             and page.locator("table.data tbody tr[data-state]").count() == N_TASKS, what="the square tasks")
    assert f"of {N_TASKS} matching" in page.locator("#tasks-status").inner_text()
    shot(page, "tasks")


def test_task_detail_shows_the_error(page: Any, dash: Dash) -> None:
    goto(page, dash, "tasks?state=FAILED")
    page.locator("tr[data-name='explode'] a").first.click()
    page.wait_for_selector("pre.traceback")
    assert "kaboom from the dashboard test" in page.locator("pre.traceback").inner_text()
    assert "FAILED" in page.locator("dl.facts").inner_text()
    assert page.locator("table.data tbody tr").count() >= 2  # state changes
    shot(page, "task-detail")


def test_objects_view(page: Any, dash: Dash) -> None:
    goto(page, dash, "objects")
    blob = dash.refs["blob"].hex()
    wait_for(lambda: blob in page.locator("main").inner_text(), what="the stored object")
    assert "IN_STORE" in page.locator("main").inner_text()
    shot(page, "objects")


def test_placement_groups_view(page: Any, dash: Dash) -> None:
    goto(page, dash, "placement-groups")
    assert "does not support placement groups" in page.locator("main").inner_text()
    shot(page, "placement-groups")


def test_jobs_view(page: Any, dash: Dash, tmp_path: Path) -> None:
    reply = dash.post("/api/jobs/", {"entrypoint": "echo hello from a job", "submission_id": "ui_job",
                                     "runtime_env": {"working_dir": str(tmp_path)}}, token=dash.token)
    assert reply.status == 200
    wait_for(lambda: dash.get_json("/api/jobs/ui_job")["status"] == "SUCCEEDED", what="the job to finish")
    goto(page, dash, "jobs")
    wait_for(lambda: "ui_job" in page.locator("main").inner_text(), what="the job row")
    text = page.locator("main").inner_text()
    assert "SUCCEEDED" in text and "RUNNING" in text  # the job, and this test's driver
    shot(page, "jobs")


def test_logs_view_tails_a_file(page: Any, dash: Dash) -> None:
    goto(page, dash, "logs")
    page.click("ul.files a:text-is('gcs.log')")
    page.wait_for_selector("pre.log")
    wait_for(lambda: "gcs_started" in page.locator("pre.log").inner_text(), what="the GCS log")
    shot(page, "logs")


def test_plugins_view(page: Any, dash: Dash) -> None:
    goto(page, dash, "plugins")
    page.wait_for_selector("tr[data-family='dashboard'][data-name='web']")
    assert page.locator("tr[data-family='dashboard'][data-name='web']").get_attribute("data-selected") == "1"
    assert page.locator("tr[data-family='gcs_store'][data-name='memory']").get_attribute("data-selected") == "1"
    assert "task_history_cap" in page.locator("main").inner_text()
    shot(page, "plugins")


def test_without_the_token_actions_are_disabled(browser: Any, dash: Dash) -> None:
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        pg.goto(f"{dash.url}/#/actors")
        pg.wait_for_selector("#auth:has-text('Read-only')")
        button = pg.locator("tr[data-name='dash_counter'] button")
        wait_for(lambda: button.count() == 1, what="the actor row")
        assert button.is_disabled()
    finally:
        ctx.close()


def test_kill_an_actor_from_the_ui(page: Any, dash: Dash) -> None:
    goto(page, dash, "actors")
    row = page.locator("tr[data-name='dash_counter']")
    wait_for(lambda: row.count() == 1 and row.get_attribute("data-state") == "ALIVE", what="the live actor")
    shot(page, "actors")
    row.locator("button:text-is('Kill')").click()
    row.locator("button:text-is('Confirm kill')").click()
    wait_for(lambda: page.locator("tr[data-name='dash_counter'][data-state='DEAD']").count() == 1,
             what="the actor row to show DEAD")
    actor = dash.get_json("/api/v0/actors?name=dash_counter")["actors"][0]
    assert actor["state"] == "DEAD"
    with pytest.raises(Exception):
        ray.get(dash.refs["counter"].incr.remote(), timeout=20)
    shot(page, "actors-after-kill")


# -- the timeline, a job's page, actor tasks' node, host figures, a narrow screen ------------------
def test_timeline_draws_a_bar_for_each_task(page: Any, dash: Dash) -> None:
    goto(page, dash, "timeline")
    bars = page.locator("svg.timeline rect.tl-bar")
    wait_for(lambda: page.locator("svg.timeline rect.tl-bar[data-name='square']").count() >= N_TASKS,
             what="a bar for each square task")
    assert page.locator("svg.timeline rect.tl-bar[data-name='explode'][data-state='FAILED']").count() == 1
    assert page.locator("svg.timeline rect.tl-bar[data-name='Counter.incr']").count() >= 1
    # every bar has a size and sits in a lane of a worker of a node
    for i in range(min(bars.count(), 5)):
        assert float(bars.nth(i).get_attribute("width")) > 0
    assert page.locator("svg.timeline g.tl-lane[data-node-id]").count() >= 1
    assert "tasks on" in page.locator("svg.timeline").get_attribute("aria-label")
    shot(page, "timeline")
    page.locator("svg.timeline a:has(rect[data-name='explode'])").first.click()
    page.wait_for_selector("pre.traceback")  # the bar opens its task


def test_actor_task_rows_show_their_node(page: Any, dash: Dash) -> None:
    head = next(n for n in dash.get_json("/api/v0/nodes")["nodes"] if n["is_head_node"])
    goto(page, dash, "tasks?name=Counter.incr&state=FINISHED")  # (a call after the kill never ran)
    cell = page.locator("tr[data-name='Counter.incr'][data-state='FINISHED'] td.node")
    wait_for(lambda: cell.count() >= 1, what="the actor task row")
    assert cell.first.inner_text().strip() == head["node_id"][:8]
    shot(page, "actor-task-node")


JOB_SCRIPT = '''
import microray as ray
ray.init()

@ray.remote
def job_square(x):
    return x * x

@ray.remote
class JobActor:
    def ping(self):
        return "pong"

print("job says: squares", ray.get([job_square.remote(i) for i in range(3)]), flush=True)
a = JobActor.options(name="job_actor").remote()
print("job says:", ray.get(a.ping.remote()), flush=True)
'''


def test_job_page_shows_its_log_tasks_and_actors(page: Any, dash: Dash, tmp_path: Path) -> None:
    (tmp_path / "job_script.py").write_text(JOB_SCRIPT)
    reply = dash.post("/api/jobs/", {"entrypoint": "python job_script.py", "submission_id": "page_job",
                                     "runtime_env": {"working_dir": str(tmp_path)}}, token=dash.token)
    assert reply.status == 200, reply.body
    wait_for(lambda: dash.get_json("/api/jobs/page_job")["status"] != "RUNNING", timeout=60, what="the job to end")
    assert dash.get_json("/api/jobs/page_job")["status"] == "SUCCEEDED"
    goto(page, dash, "jobs")
    page.locator("tr[data-submission-id='page_job'] a").first.click()
    page.wait_for_selector("pre.log")
    wait_for(lambda: "job says: squares [0, 1, 4]" in page.locator("pre.log").inner_text()
             and "job says: pong" in page.locator("pre.log").inner_text(), what="the driver's lines")
    assert "SUCCEEDED" in page.locator("dl.facts").inner_text()
    wait_for(lambda: page.locator("tr[data-name='job_square'][data-state='FINISHED']").count() == 3
             and page.locator("tr[data-name='JobActor.ping']").count() == 1, what="the job's tasks")
    # only this job's tasks: none of the test driver's
    assert page.locator("tr[data-name='square']").count() == 0
    assert page.locator("tr[data-name='job_actor']").count() == 1
    node_cells = page.locator("tr[data-name='JobActor.ping'] td.node")
    assert node_cells.first.inner_text().strip() not in ("", "—")
    shot(page, "job-detail")


def test_narrow_screen_tables_scroll_inside_and_the_page_does_not(browser: Any, dash: Dash) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        for view, ready in [("overview", "svg.chart"), ("nodes", "article.node"), ("tasks", "tr[data-state]"),
                            ("timeline", "svg.timeline"), ("actors", "tr[data-state]"), ("objects", "table.data"),
                            ("jobs", "tr[data-submission-id]"), ("job/ui_job", "pre.log"), ("logs/gcs.log", "pre.log"),
                            ("plugins", "tr[data-family]"), ("task/" + dash.get_json("/api/v0/tasks?name=explode")["tasks"][0]["task_id"],
                                                             "pre.traceback")]:
            pg.goto(f"{dash.url}/#/{view}")
            pg.wait_for_selector("#conn:has-text('live')")
            pg.wait_for_selector(ready)
            width = pg.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], (view, width)
            if view == "tasks":
                wrap = pg.locator(".table-wrap").first
                dims = wrap.evaluate("w => [w.scrollWidth, w.clientWidth, getComputedStyle(w).overflowX]")
                assert dims[0] > dims[1] and dims[2] == "auto", dims  # the table scrolls inside its box
                shot(pg, "narrow-tasks")
            if view in ("nodes", "timeline"):
                shot(pg, "narrow-" + view)
    finally:
        ctx.close()
    assert not errors, errors


def test_nodes_view_shows_each_hosts_cpu_memory_and_disk(page: Any, dash: Dash, tmp_path: Path) -> None:
    from microray.cluster_utils import Cluster

    cluster = Cluster(session_root=str(tmp_path / "root"), shutdown_at_exit=False)
    # a worker node joins this module's embedded head (the Cluster only needs its address and token)
    cluster.head_node = type("Head", (), {"gcs_address": dash.context.address_info["gcs_address"],
                                          "session_dir": dash.session_dir})()
    second = cluster.add_node(num_cpus=1)
    try:
        goto(page, dash, "nodes")
        hosts = page.locator("article.node section.host")
        wait_for(lambda: hosts.count() == 2 and all(
            float(hosts.nth(i).get_attribute("data-mem-total") or 0) > 0 for i in range(2)), what="two nodes' hosts")
        ids = {hosts.nth(i).get_attribute("data-node-id") for i in range(2)}
        assert second.node_id in ids
        for i in range(2):
            host = hosts.nth(i)
            assert 0 <= float(host.get_attribute("data-cpu-percent")) <= 100
            assert 0 < float(host.get_attribute("data-mem-used")) <= float(host.get_attribute("data-mem-total"))
            assert 0 < float(host.get_attribute("data-disk-used")) <= float(host.get_attribute("data-disk-total"))
            text = host.inner_text()
            assert re.search(r"Host CPU\s*[\d.]+% / 100% \(\d+%\)", text), text
            assert re.search(r"Host memory\s*[\d.]+ [KMGT]iB / [\d.]+ [KMGT]iB", text), text
            assert re.search(r"Host disk\s*[\d.]+ [KMGT]iB / [\d.]+ [KMGT]iB", text), text
        shot(page, "nodes-two-hosts")
    finally:
        cluster.remove_node(second)
        cluster.head_node = None
        cluster.shutdown()
