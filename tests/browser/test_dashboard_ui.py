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
