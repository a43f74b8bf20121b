"""The ``microray`` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import click

from microray import __version__


def _parse_resources(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise click.BadParameter(f"--resources must be JSON such as '{{\"GPU_X\": 2}}', got {text!r}") from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"--resources must be a JSON object, got {text!r}")
    return value


def _parse_options(pairs: tuple[str, ...], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{flag} expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="microray")
def cli() -> None:
    """microray: Ray's programming model as a plugin-based microkernel."""


def _parse_labels(text: str | None) -> dict[str, str]:
    """``--labels``: a JSON object (``'{"zone": "a"}'``) or ``k=v`` pairs (``zone=a,rack=3``)."""
    if not text:
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise click.BadParameter(f"--labels must be a JSON object or k=v pairs such as 'zone=a,rack=3', "
                                     f"got {text!r}") from None
        if not isinstance(value, dict):
            raise click.BadParameter(f"--labels must be a JSON object, got {text!r}")
        return {str(k): str(v) for k, v in value.items()}
    out = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"--labels expects k=v pairs separated by commas (or JSON), got {pair!r}")
        out[key.strip()] = value.strip()
    return out


@cli.command()
@click.option("--head", is_flag=True, help="Start a head node (GCS + raylet) on this machine.")
@click.option("--address", default=None, help="Join the cluster whose GCS is at HOST:PORT (a worker node).")
@click.option("--port", type=int, default=None, help="GCS port of the head (default: any free port).")
@click.option("--node-manager-port", type=int, default=None, help="Port of this node's raylet (default: any free port).")
@click.option("--node-ip-address", default=None, help="The IP this node's services bind to and announce (default 127.0.0.1).")
@click.option("--num-cpus", type=int, default=None,
              help="CPUs this node offers to tasks and actors (default: the machine's CPU count).")
@click.option("--num-gpus", type=int, default=None,
              help="GPUs this node offers to tasks and actors (default 0: GPUs are not detected).")
@click.option("--resources", default=None, help='Custom resources as JSON, e.g. \'{"disk": 2}\'.')
@click.option("--labels", default=None, help="Node labels: JSON ('{\"zone\": \"a\"}') or k=v pairs ('zone=a,rack=3').")
@click.option("--object-store-memory", default=None, help="Object store capacity (bytes or e.g. 2GiB).")
@click.option("--gcs-store", default=None, help="GCS store backend (memory, redis, etcd, ...); head only.")
@click.option("--gcs-store-option", multiple=True, help="key=value option of the GCS store; head only.")
@click.option("--object-store", default=None, help="Object store backend (shm, lmdb, ...).")
@click.option("--object-store-option", multiple=True, help="key=value option of the object store.")
@click.option("--scheduling-policy", default=None,
              help="Scheduling policy that places every task and actor (hybrid, spread, or a plugin's; "
                   "'microray plugins' lists them); head only.")
@click.option("--scheduling-policy-option", multiple=True, help="key=value option of the scheduling policy; head only.")
@click.option("--dashboard", default=None,
              help="Dashboard backend ('web', the default, or 'none': no dashboard); head only.")
@click.option("--dashboard-host", default=None, help="Interface the dashboard listens on (default 127.0.0.1); head only.")
@click.option("--dashboard-port", type=int, default=None, help="Port of the dashboard (default 8265); head only.")
@click.option("--temp-dir", default=None,
              help="Root folder of the session folders (logs, records; default /tmp/microray-sessions, or "
                   "/tmp/microray-sessions-<uid> when another user owns that). Other commands find this "
                   "cluster with MICRORAY_SESSION_ROOT set to the same folder.")
@click.option("--block", is_flag=True, help="Stay in the foreground until interrupted.")
@click.option("--token", default=None, envvar="MICRORAY_TOKEN", show_envvar=True,
              help="The cluster token. A head makes a new random one unless given; a joining node needs the "
                   "cluster's (found by itself on the head machine; `microray token` there prints it). Kept in "
                   "the node's session folder (mode 0600); node processes read it there, never from arguments.")
def start(head, address, port, node_manager_port, node_ip_address, num_cpus, num_gpus, resources, labels,
          object_store_memory, gcs_store, gcs_store_option, object_store, object_store_option, scheduling_policy,
          scheduling_policy_option, dashboard, dashboard_host, dashboard_port, temp_dir, block, token) -> None:
    """Start the processes of a node on this machine: a head (--head) or a worker node
    joining the cluster at --address=HOST:PORT."""
    from microray import config as config_mod
    from microray import node
    from microray.api import _check_backends
    from microray.exceptions import ConfigError, PluginError, RaySystemError
    from microray.process import pid_alive

    # the node's processes get the token from its session folder, not from our environment
    os.environ.pop("MICRORAY_TOKEN", None)
    if head and address:
        raise click.UsageError("pass either --head (start a cluster) or --address=HOST:PORT (join one), not both")
    if not head and not address:
        raise click.UsageError("pass --head to start a cluster, or --address=HOST:PORT to join the cluster there")
    if address:
        head_only = {"--port": port, "--gcs-store": gcs_store, "--gcs-store-option": gcs_store_option,
                     "--scheduling-policy": scheduling_policy, "--dashboard": dashboard,
                     "--scheduling-policy-option": scheduling_policy_option, "--dashboard-host": dashboard_host,
                     "--dashboard-port": dashboard_port}
        given = [flag for flag, value in head_only.items() if value]
        if given:
            raise click.UsageError(f"{', '.join(given)} configure the head; a joining node takes them from the "
                                   "cluster (pass them to 'microray start --head')")
    overrides = dict(
        gcs_port=port, raylet_port=node_manager_port, node_ip=node_ip_address, num_cpus=num_cpus,
        num_gpus=num_gpus, resources=_parse_resources(resources) or None, labels=_parse_labels(labels) or None,
        object_store_memory=object_store_memory, gcs_store=gcs_store, object_store=object_store,
        scheduling_policy=scheduling_policy, dashboard=dashboard, dashboard_host=dashboard_host,
        dashboard_port=dashboard_port, session_root=temp_dir,
    )
    if scheduling_policy_option:
        overrides["scheduling_policy_options"] = _parse_options(scheduling_policy_option, "--scheduling-policy-option")
    if gcs_store_option:
        overrides["gcs_store_options"] = _parse_options(gcs_store_option, "--gcs-store-option")
    if object_store_option:
        overrides["object_store_options"] = _parse_options(object_store_option, "--object-store-option")
    try:
        cfg = config_mod.resolve(overrides)
        _check_backends(cfg)
        if _secret_on_command_line(cfg, overrides):
            click.echo("warning: a secret given with --*-store-option is visible to other users in this "
                       "command's arguments (ps); give it through MICRORAY_GCS_STORE_OPTIONS or "
                       "microray.toml instead", err=True)
            if cfg.start_method == "auto":  # forks would show this command line for their whole life
                cfg = cfg.replace(start_method="spawn")
        if address:
            gcs_address = address.removeprefix("microray://").removeprefix("ray://")
            try:
                token = node.cluster_token(gcs_address, cfg.session_root, token)
            except ConnectionError as exc:
                raise click.ClickException(str(exc)) from None
            _start_worker_node(cfg, gcs_address, block, token)
            return
        running = node.current_cluster(cfg.session_root)
        if running is not None:
            raise click.ClickException(
                f"a microray cluster is already running here (GCS {running.gcs_address}); "
                "run 'microray stop' first, or join it with 'microray start --address=" + running.gcs_address + "'"
            )
        handle = node.start_head(cfg, embedded=False, token=token)
    except (ConfigError, PluginError, RaySystemError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Started a microray head node.\n  GCS address: {handle.gcs_address}\n"
               f"  Session:     {handle.session_dir}\n"
               f"Connect a driver with microray.init(address=\"{handle.gcs_address}\") or address=\"auto\".\n"
               f"Join a worker node with: microray start --address={handle.gcs_address}\n"
               "Every service requires the cluster token: drivers and nodes on this machine find it; "
               "elsewhere set MICRORAY_TOKEN (or --token) to what `microray token` prints here.\n"
               "Stop it with: microray stop")
    if handle.dashboard_url:
        click.echo(f"Dashboard: {handle.dashboard_url} ({node.DASHBOARD_TOKEN_HINT})")
    if block:
        stop_flag = _stop_on_signals()
        while not stop_flag["stop"] and pid_alive(handle.pids["raylet"]) and _gcs_running_or_restartable(
                handle, cfg):
            time.sleep(0.2)
        node.stop_node(handle)
        node.forget_current(cfg.session_root)


def _secret_on_command_line(cfg: Any, overrides: dict[str, Any]) -> bool:
    """Whether an option table given as flags holds a secret (a password, in a URL or not)."""
    from microray import redaction
    from microray.plugin_manager import get_plugin_manager

    given = {k: overrides[k] for k in ("gcs_store_options", "object_store_options") if k in overrides}
    if not given:
        return False
    shown = redaction.redact_config({**given, "gcs_store": cfg.gcs_store, "object_store": cfg.object_store},
                                    get_plugin_manager(cfg.plugins))
    return any(shown[k] != v for k, v in given.items())


def _stop_on_signals() -> dict[str, bool]:
    stop_flag = {"stop": False}

    def _stop(*_a):
        stop_flag["stop"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop_flag


def _start_worker_node(cfg: Any, gcs_address: str, block: bool, token: str) -> None:
    """``microray start --address``: start a raylet that joins the cluster at
    ``gcs_address`` with the cluster ``token``; return once the GCS lists it ALIVE
    (``--block``: run until interrupted, then stop it)."""
    from microray import rpc

    from microray import worker_node
    from microray.exceptions import RaySystemError
    from microray.process import pid_alive

    stop_flag = _stop_on_signals() if block else {"stop": False}  # before the node runs: no gap
    handle = worker_node.start_worker_node(cfg, gcs_address, token=token)
    worker_node.record_node(cfg.session_root, handle, head=False)
    try:
        worker_node.wait_registered(gcs_address, handle.node_id, rpc.Credentials(token, cfg.tls))
    except RaySystemError:
        worker_node.kill_process_group(handle.pids["raylet"])
        worker_node.forget_node(cfg.session_root, handle.node_id)
        raise
    click.echo(f"Started a microray worker node.\n  Node id:     {handle.node_id}\n"
               f"  Raylet:      {handle.raylet_address}\n  GCS address: {gcs_address}\n"
               f"  Session:     {handle.session_dir}\n"
               "Stop it (and every node started on this machine) with: microray stop")
    if block:
        raylet = handle.pids["raylet"]
        while not stop_flag["stop"] and pid_alive(raylet):
            time.sleep(0.2)
        if pid_alive(raylet):
            os.kill(raylet, signal.SIGTERM)
        if not worker_node.wait_gone([raylet], 10.0):
            worker_node.kill_process_group(raylet)
        worker_node.forget_node(cfg.session_root, handle.node_id)


def _gcs_running_or_restartable(handle: Any, cfg: Any) -> bool:
    """For ``start --block``: is the node's GCS running (``microray restart-gcs`` records a
    new pid), or gone but recoverable (a durable store), so the node should keep running?"""
    from microray import node
    from microray.process import pid_alive

    current = node.current_cluster(cfg.session_root)
    if current is not None and current.node_id == handle.node_id:
        handle.pids["gcs"] = current.pids.get("gcs", handle.pids["gcs"])
    if pid_alive(handle.pids["gcs"]):
        handle._gcs_down_noted = False
        return True
    if not _gcs_store_persists(cfg):
        return False  # nothing to recover: stop the node as before
    if not getattr(handle, "_gcs_down_noted", False):
        handle._gcs_down_noted = True
        click.echo(f"The GCS (pid {handle.pids['gcs']}) exited; the node keeps running. "
                   "Start it again with: microray restart-gcs", err=True)
    return True


@cli.command()
def token() -> None:
    """Print the cluster token of the cluster with a node on this machine (what drivers
    and nodes on other machines give as MICRORAY_TOKEN or --token)."""
    from microray import config as config_mod
    from microray import node, worker_node

    root = config_mod.resolve({}).session_root
    head = node.current_cluster(root)
    gcs = head.gcs_address if head is not None else worker_node.local_gcs_address(root)
    try:
        found = node.local_token(gcs, root) if gcs else None
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None
    if found is None:
        raise click.ClickException(
            "no microray cluster is running on this machine (start one with 'microray start --head'); "
            "the token of a cluster elsewhere is printed by 'microray token' on its head machine"
        )
    click.echo(found)


@cli.command()
@click.option("--force", is_flag=True, help="SIGKILL at once (with each process group) instead of SIGTERM.")
@click.option("--grace-period", type=float, default=10.0, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")
@click.option("--temp-dir", default=None, help="The session root given to 'microray start --temp-dir'.")
def stop(force: bool, grace_period: float, temp_dir: str | None) -> None:
    """Stop the nodes that 'microray start' started on this machine (worker nodes and
    the head): exactly the processes recorded when they started."""
    from microray import config as config_mod
    from microray import node, worker_node

    cfg = config_mod.resolve({"session_root": temp_dir})
    workers = worker_node.stop_recorded(cfg.session_root, force=force, grace=grace_period)
    for record in workers:
        click.echo(f"Stopped the worker node {record['node_id']} (raylet pid {record['pids'].get('raylet')}).")
    handle = node.current_cluster(cfg.session_root)
    if handle is None:
        node.forget_current(cfg.session_root)
        if not workers:
            click.echo("No running microray cluster found.")
    else:
        if force:
            for pid in handle.pids.values():
                worker_node.kill_process_group(pid)
        node.stop_node(handle, timeout=grace_period)
        node.forget_current(cfg.session_root)
        click.echo(f"Stopped the microray cluster (GCS {handle.gcs_address}).")
    if force:
        from microray.object_store_access import sweep_stale_namespaces

        try:  # SIGKILLed raylets could not remove their object store namespace
            sweep_stale_namespaces(cfg)
        except Exception as exc:  # noqa: BLE001 -- the processes are gone; report the rest
            click.echo(f"warning: could not remove stale object store namespaces: {exc}", err=True)


@cli.command("restart-gcs")
@click.option("--force", is_flag=True, help="SIGKILL a running GCS instead of SIGTERM.")
@click.option("--allow-state-loss", is_flag=True,
              help="Restart even when the GCS store is not persistent, e.g. gcs_store=memory "
                   "(the new GCS starts empty; every driver fails).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the new GCS.")
def restart_gcs(force: bool, allow_state_loss: bool, timeout: float) -> None:
    """Restart the GCS of the head that 'microray start' started here (same port, same store).

    A running GCS is stopped first; a GCS that died is just started again. With a durable
    GCS store (redis, etcd) the new GCS recovers the cluster's nodes, actors, jobs and KV,
    and raylets, workers and drivers reconnect by themselves."""
    from microray import config as config_mod
    from microray import node
    from microray.process import pid_alive
    from microray.exceptions import RaySystemError

    cfg = config_mod.resolve({})
    handle = node.current_cluster(cfg.session_root)
    if handle is None:
        raise click.ClickException("No running microray cluster found (start one with 'microray start --head').")
    cluster_cfg = _cluster_config(handle)
    store = cluster_cfg.gcs_store
    if not _gcs_store_persists(cluster_cfg) and not allow_state_loss:
        raise click.ClickException(
            f"this cluster's GCS store {store!r} is not persistent (it does not declare the "
            "'persistence' capability): a restarted GCS starts empty, the nodes re-register "
            "but actors, jobs and the KV are lost and every connected driver fails. Pass "
            "--allow-state-loss to do it anyway, or run the head on a persistent store "
            "('microray plugins' lists each store's capabilities; redis and etcd are persistent)."
        )
    pid = handle.pids.get("gcs", 0)
    if pid and pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.02)
    t0 = time.monotonic()
    try:
        node.restart_gcs(handle, timeout=timeout)
    except (RaySystemError, RuntimeError) as exc:
        raise click.ClickException(f"the GCS did not restart: {exc}") from None
    click.echo(f"Restarted the GCS at {handle.gcs_address} (pid {handle.pids['gcs']}, store {store}) "
               f"in {time.monotonic() - t0:.1f}s.")


def _cluster_config(handle: Any) -> Any:
    """The config a started head runs with (from the config file its GCS was started
    with; defaults when there is none)."""
    from microray import config as config_mod
    from microray import session

    argv = list(handle.gcs_argv)
    try:
        return session.read_node_config(argv[argv.index("--config-file") + 1])
    except (ValueError, IndexError, OSError, TypeError):
        return config_mod.Config()


def _gcs_store_persists(cfg: Any) -> bool:
    """Whether the GCS store ``cfg`` selects survives a GCS restart (its ``persistence``
    capability); an unknown store counts as not persistent."""
    from microray.exceptions import PluginError
    from microray.plugin_manager import get_plugin_manager

    try:
        return get_plugin_manager(cfg.plugins).has_capability("gcs_store", cfg.gcs_store, "persistence")
    except PluginError:
        return False


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
def plugins(fmt: str) -> None:
    """List every plugin family, the registered backends, where each comes from, and the selected one."""
    from rich.console import Console
    from rich.table import Table

    from microray import config as config_mod
    from microray.plugin_manager import get_plugin_manager

    cfg = config_mod.resolve({})
    pm = get_plugin_manager(cfg.plugins)
    rows = pm.describe()
    for row in rows:
        row["selected"] = getattr(cfg, row["family"]) == row["name"]
    if fmt == "json":
        click.echo(json.dumps({"backends": rows, "failed": [f.__dict__ for f in pm.failed]}, indent=2))
        return
    table = Table(title="microray plugins")
    for col in ("family", "name", "selected", "source", "capabilities", "description"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["family"], row["name"], "*" if row["selected"] else "", row["source"],
                      ", ".join(row["capabilities"]), row["description"])
    console = Console()
    console.print(table)
    for failed in pm.failed:
        console.print(f"[red]failed to load[/red] {failed.name} from {failed.source}: {failed.error}")


@cli.command()
@click.option("--quick", is_flag=True, help="Fewer iterations.")
@click.option("--only", default=None, help="Comma-separated figure names to run.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def microbenchmark(quick: bool, only: str | None, as_json: bool) -> None:
    """Ray-named throughput figures on a fresh embedded cluster."""
    from microray.microbenchmark import run

    run(quick=quick, only=set(only.split(",")) if only else None, as_json=as_json)


from microray import cli_job, cli_state  # noqa: E402 -- the state commands and `job`, added here

for _command in (*cli_state.COMMANDS, cli_job.job):
    cli.add_command(_command)


def main() -> None:
    from microray import log as log_setup

    # the CLI's own process says warnings and errors only: debug/info events of the
    # node being started belong in its session logs, not before a command's answer
    log_setup.configure_for_console("warning")
    try:
        from microray.plugin_manager import get_plugin_manager

        get_plugin_manager().pm.hook.microray_add_cli_commands(cli=cli)
    except Exception as exc:  # noqa: BLE001 -- a broken plugin must not break the CLI
        click.echo(f"warning: plugin CLI commands not loaded: {exc}", err=True)
    try:
        cli(prog_name="microray")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
