"""``microray job submit/status/logs/stop/list`` (Ray's job CLI), through the web
dashboard's HTTP job API (``/api/jobs/``) with the session token read from the running
cluster's session folder (or ``--address`` / ``--token``)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from typing import Any

import click

from microray.cli_state import _echo_data, _term_width, _when


def _dashboard(address: str | None, token: str | None) -> tuple[str, str]:
    """(dashboard URL, token): given, or those of the cluster running here."""
    from microray import config as config_mod
    from microray import node

    token = token or os.environ.get("MICRORAY_TOKEN") or None
    if address is None or token is None:
        cfg = config_mod.resolve({})
        handle = node.current_cluster(cfg.session_root)
        if handle is None and address is None:
            raise click.ClickException("no running microray cluster found on this machine; start one with "
                                       "'microray start --head', or pass --address http://HOST:PORT (its dashboard)")
        if handle is not None:
            if address is None:
                if not handle.dashboard_url:
                    raise click.ClickException("the running cluster has no dashboard (dashboard = \"none\")")
                address = handle.dashboard_url
            if token is None:
                from microray import session

                try:
                    token = session.read_token(handle.session_dir)
                except OSError:
                    token = None
    assert address is not None  # given, or the running cluster's (else raised above)
    return address.rstrip("/"), token or ""


def _http(method: str, url: str, token: str = "", body: Any = None, timeout: float = 30) -> Any:
    """Call the dashboard; ``body``: a JSON value, or bytes sent as they are (a zip)."""
    import urllib.error
    import urllib.request

    raw = isinstance(body, bytes)
    data = body if raw else json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Accept": "application/json"})
    if data is not None:
        req.add_header("Content-Type", "application/zip" if raw else "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            msg = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            msg = exc.reason
        raise click.ClickException(f"{method} {url}: {exc.code} {msg}") from None
    except urllib.error.URLError as exc:
        raise click.ClickException(f"cannot reach the dashboard at {url}: {exc.reason}") from None


_DASH = click.option("--address", default=None, help="Dashboard URL http://HOST:PORT (default: the cluster here).")
_TOKEN = click.option("--token", default=None, help="Cluster token (default: MICRORAY_TOKEN, else read from the session folder of the cluster running here).")


@click.group("job")
def job() -> None:
    """Submit and manage jobs through the dashboard's job API."""


def _follow(base: str, sid: str, token: str) -> str:
    offset = 0
    while True:
        chunk = _http("GET", f"{base}/api/jobs/{sid}/logs?offset={offset}", token)
        if chunk["logs"]:
            sys.stdout.write(chunk["logs"])
            sys.stdout.flush()
        offset = chunk["offset"]
        if chunk["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            rest = _http("GET", f"{base}/api/jobs/{sid}/logs?offset={offset}", token)
            sys.stdout.write(rest["logs"])
            return chunk["status"]
        time.sleep(0.3)


def _upload(base: str, token: str, path: str, excludes: list[str], as_module: bool, what: str) -> str:
    """Pack ``path`` and store it in the cluster (through the dashboard) unless it is
    there already; its package URI."""
    from microray import runtime_env as renv

    if renv.is_package_uri(path):
        return path
    try:
        pkg = renv.pack(path, excludes=excludes, max_bytes=renv.DEFAULT_MAX_BYTES, as_module=as_module, what=what)
    except renv.RuntimeEnvError as exc:
        raise click.ClickException(str(exc)) from None
    url = f"{base}/api/packages/{renv.package_hash(pkg.uri)}"
    if _http("GET", url, token)["exists"]:
        return pkg.uri
    _http("PUT", url, token, pkg.data, timeout=300)
    return pkg.uri


@job.command("submit", context_settings={"ignore_unknown_options": True})
@click.option("--working-dir", default=".", show_default=True,
              help="Folder of this machine that the job runs in: packed, stored in the cluster and unpacked "
                   "on each node that runs the job's driver or its tasks.")
@click.option("--runtime-env-json", default=None,
              help="The job's runtime_env as JSON (py_modules, excludes, env_vars; local paths are uploaded).")
@click.option("--submission-id", default=None,
              help="Id of the job (1-64 letters, digits, '_' or '-'; default: a new random id).")
@click.option("--metadata-json", default=None, help="JSON object of string metadata.")
@click.option("--env", "env_pairs", multiple=True, help="KEY=VALUE environment variable for the job; repeatable.")
@click.option("--no-wait", is_flag=True, help="Return after submitting instead of following the logs.")
@click.option("--entrypoint-num-cpus", type=float, default=None,
              help="CPUs the entrypoint needs (recorded and shown, as Ray's; the entrypoint runs on the head "
                   "and nothing is reserved for it).")
@click.option("--entrypoint-num-gpus", type=float, default=None, help="GPUs the entrypoint needs (recorded, as above).")
@click.option("--entrypoint-resources", default=None,
              help="Custom resources the entrypoint needs, as JSON (recorded, as above).")
@_DASH
@_TOKEN
@click.argument("entrypoint", nargs=-1, required=True, type=click.UNPROCESSED)
def job_submit(working_dir: str, runtime_env_json: str | None, submission_id: str | None, metadata_json: str | None,
               env_pairs: tuple[str, ...], no_wait: bool, entrypoint_num_cpus: float | None,
               entrypoint_num_gpus: float | None, entrypoint_resources: str | None, address: str | None,
               token: str | None, entrypoint: tuple[str, ...]) -> None:
    """Run ENTRYPOINT (after --) as a job: ``microray job submit --working-dir . -- python script.py``.
    The job's driver runs in the uploaded working dir, and its tasks and actors too."""
    from microray.task_options import validate_options

    base, token = _dashboard(address, token)
    command = entrypoint[0] if len(entrypoint) == 1 else shlex.join(entrypoint)
    runtime_env: dict[str, Any] = json.loads(runtime_env_json) if runtime_env_json else {}
    try:
        validate_options({"runtime_env": runtime_env}, {"runtime_env"}, "microray job submit")
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--runtime-env-json") from None
    env = dict(runtime_env.get("env_vars") or {})
    for pair in env_pairs:
        if "=" not in pair:
            raise click.BadParameter(f"--env expects KEY=VALUE, got {pair!r}")
        k, v = pair.split("=", 1)
        env[k] = v
    excludes = list(runtime_env.pop("excludes", None) or [])
    runtime_env["working_dir"] = _upload(base, token, runtime_env.get("working_dir") or working_dir, excludes,
                                         False, "working_dir")
    if runtime_env.get("py_modules"):
        runtime_env["py_modules"] = [_upload(base, token, m, excludes, True, "py_modules entry")
                                     for m in runtime_env["py_modules"]]
    runtime_env["env_vars"] = env
    body: dict[str, Any] = {"entrypoint": command, "runtime_env": runtime_env}
    if submission_id:
        body["submission_id"] = submission_id
    if metadata_json:
        body["metadata"] = json.loads(metadata_json)
    if entrypoint_num_cpus is not None:
        body["entrypoint_num_cpus"] = entrypoint_num_cpus
    if entrypoint_num_gpus is not None:
        body["entrypoint_num_gpus"] = entrypoint_num_gpus
    if entrypoint_resources:
        try:
            body["entrypoint_resources"] = json.loads(entrypoint_resources)
        except json.JSONDecodeError:
            raise click.BadParameter(f"expected a JSON object such as '{{\"disk\": 1}}', got {entrypoint_resources!r}",
                                     param_hint="'--entrypoint-resources'") from None
    reply = _http("POST", f"{base}/api/jobs/", token, body)
    sid = reply["submission_id"]
    if no_wait:
        click.echo(f"Job '{sid}' submitted successfully.", err=True)
        click.echo(f"Follow it with: microray job logs {sid} --follow", err=True)
        click.echo(sid)
        return
    try:  # from the line that says it was submitted on: Ctrl-C leaves the job running
        click.echo(f"Job '{sid}' submitted successfully.", err=True)
        status = _follow(base, sid, token)
    except KeyboardInterrupt:
        click.echo(f"\nStopped following the logs; job '{sid}' keeps running in the cluster.\n"
                   f"  Follow it again: microray job logs {sid} --follow\n"
                   f"  Stop it:         microray job stop {sid}", err=True)
        sys.exit(130)
    click.echo(f"Job '{sid}' {status.lower()}.", err=True)
    sys.exit(0 if status == "SUCCEEDED" else 1)


@job.command("status")
@click.argument("submission_id")
@_DASH
@_TOKEN
def job_status(submission_id: str, address: str | None, token: str | None) -> None:
    """The status of a submitted job."""
    base, token = _dashboard(address, token)
    j = _http("GET", f"{base}/api/jobs/{submission_id}", token)
    click.echo(f"Status for job '{submission_id}': {j['status']}")
    if j.get("message"):
        click.echo(f"Status message: {j['message']}")


@job.command("logs")
@click.argument("submission_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
@_DASH
@_TOKEN
def job_logs(submission_id: str, follow: bool, address: str | None, token: str | None) -> None:
    """The output of a submitted job."""
    base, token = _dashboard(address, token)
    if follow:
        _follow(base, submission_id, token)
        return
    sys.stdout.write(_http("GET", f"{base}/api/jobs/{submission_id}/logs", token)["logs"])


@job.command("stop")
@click.argument("submission_id")
@click.option("--no-wait", is_flag=True, help="Do not wait for the job to end.")
@_DASH
@_TOKEN
def job_stop(submission_id: str, no_wait: bool, address: str | None, token: str | None) -> None:
    """Stop a running job (SIGTERM to its process group, SIGKILL after 3 s)."""
    base, token = _dashboard(address, token)
    stopped = _http("POST", f"{base}/api/jobs/{submission_id}/stop", token, {})["stopped"]
    if not stopped:
        click.echo(f"Job '{submission_id}' is not running.")
        return
    click.echo(f"Stopping job '{submission_id}'.")
    deadline = time.monotonic() + 15
    while not no_wait and time.monotonic() < deadline:
        j = _http("GET", f"{base}/api/jobs/{submission_id}", token)
        if j["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            click.echo(f"Job '{submission_id}' {j['status'].lower()}.")
            return
        time.sleep(0.2)


@job.command("delete")
@click.argument("submission_id")
@_DASH
@_TOKEN
def job_delete(submission_id: str, address: str | None, token: str | None) -> None:
    """Forget a job that ended (its entry in the job list; its log file stays in the session)."""
    base, token = _dashboard(address, token)
    _http("DELETE", f"{base}/api/jobs/{submission_id}", token)
    click.echo(f"Job '{submission_id}' deleted.")


@job.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True,
              help="Output format.")
@_DASH
@_TOKEN
def job_list(fmt: str, address: str | None, token: str | None) -> None:
    """Jobs submitted through the dashboard."""
    from rich.console import Console
    from rich.table import Table

    base, token = _dashboard(address, token)
    jobs = _http("GET", f"{base}/api/jobs/", token)
    if fmt != "table":
        _echo_data(jobs, fmt)
        return
    table = Table(title=f"{len(jobs)} jobs", title_justify="left")
    for col in ("SUBMISSION_ID", "STATUS", "ENTRYPOINT", "START_TIME", "END_TIME", "EXIT_CODE"):
        table.add_column(col, overflow="fold")
    for j in jobs:
        table.add_row(j["submission_id"], j["status"], j["entrypoint"], _when(_ms(j["start_time"])), _when(_ms(j["end_time"])),
                      "" if j["driver_exit_code"] is None else str(j["driver_exit_code"]))
    Console(width=max(120, _term_width())).print(table)


def _ms(t: int | None) -> float | None:
    """Seconds from the job API's milliseconds (Ray's unit for job times)."""
    return t / 1000 if t else None
