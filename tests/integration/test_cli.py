"""The ``microray`` command line, run as a real subprocess: version, plugins, and a
started head node that a separate driver process connects to with address="auto".

Every test runs with its own ``MICRORAY_SESSION_ROOT`` (a tmp folder), so the
``current_cluster`` record of ``microray start`` never meets another cluster on this
machine, and every started cluster is stopped in a ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

import microray as ray
from microray.testing.processes import pid_alive, wait_for

pytestmark = pytest.mark.timeout(180)

CLI_TIMEOUT = 60


def _cli_argv() -> list[str]:
    exe = Path(sys.executable).with_name("microray")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "microray.cli"]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The environment of every subprocess of a test: a private session root."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("MICRORAY_")}
    out["MICRORAY_SESSION_ROOT"] = str(tmp_path / "sessions")
    out["COLUMNS"] = "250"
    return out


def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_cli_argv(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _tree(pid: int) -> set[int]:
    try:
        p = psutil.Process(pid)
        return {pid, *(c.pid for c in p.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


# -- version and plugins ---------------------------------------------------------------------
def test_version(env, tmp_path):
    import microray

    out = run_cli("--version", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "microray" in out.stdout
    assert microray.__version__ in out.stdout


def test_help_lists_commands(env, tmp_path):
    out = run_cli("--help", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for command in ("start", "stop", "plugins"):
        assert command in out.stdout


EXPECTED_BACKENDS = {
    "gcs_store": {"memory", "redis", "etcd"},
    "object_store": {"shm", "lmdb"},
    "scheduling_policy": {"hybrid", "spread", "random"},
    "dashboard": {"none", "web"},
}

def _config_defaults() -> dict[str, str]:
    """The backend each family selects with no config: the Config dataclass's defaults."""
    from microray.config import Config

    cfg = Config()
    return {family: getattr(cfg, family) for family in EXPECTED_BACKENDS}


DEFAULTS = _config_defaults()


def _plugins_json(env, cwd) -> dict:
    out = run_cli("plugins", "--format", "json", env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_plugins_json_lists_every_family_and_marks_the_defaults(env, tmp_path):
    data = _plugins_json(env, tmp_path)
    rows = data["backends"]
    by_family: dict[str, set[str]] = {}
    for row in rows:
        by_family.setdefault(row["family"], set()).add(row["name"])
        assert row["source"]
    for family, names in EXPECTED_BACKENDS.items():
        assert names <= by_family.get(family, set()), f"{family}: {by_family.get(family)}"
    selected = {row["family"]: row["name"] for row in rows if row["selected"]}
    assert selected == DEFAULTS
    assert data["failed"] == []


def test_plugins_selected_follows_config(env, tmp_path):
    env = {**env, "MICRORAY_OBJECT_STORE": "lmdb", "MICRORAY_SCHEDULING_POLICY": "spread"}
    rows = _plugins_json(env, tmp_path)["backends"]
    selected = {row["family"]: row["name"] for row in rows if row["selected"]}
    assert selected["object_store"] == "lmdb"
    assert selected["scheduling_policy"] == "spread"
    assert selected["gcs_store"] == "memory"
    # and from microray.toml in the working directory
    (tmp_path / "microray.toml").write_text('gcs_store = "redis"\n')
    rows = _plugins_json({k: v for k, v in env.items() if k != "MICRORAY_OBJECT_STORE"}, tmp_path)["backends"]
    selected = {row["family"]: row["name"] for row in rows if row["selected"]}
    assert selected["gcs_store"] == "redis"
    assert selected["object_store"] == "shm"


def test_plugins_table(env, tmp_path):
    out = run_cli("plugins", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for family, names in EXPECTED_BACKENDS.items():
        assert family in text
        for name in names:
            assert name in text
    # the selected backend of each family is marked with '*' on its row
    lines = text.splitlines()
    for family, name in DEFAULTS.items():
        row = [ln for ln in lines if family in ln and f" {name} " in ln]
        assert row and "*" in row[0], f"no '*' on the {family}/{name} row"
    unselected = [ln for ln in lines if "object_store" in ln and " lmdb " in ln]
    assert unselected and "*" not in unselected[0]


# -- start / driver / stop -------------------------------------------------------------------------
DRIVER = textwrap.dedent(
    """
    import json, os, sys
    import microray as ray

    ctx = ray.init(address="auto")

    @ray.remote
    def square(x):
        return x * x

    @ray.remote
    def where():
        return os.getpid(), ray.get_runtime_context().get_node_id()

    out = {
        "squares": ray.get([square.remote(i) for i in range(50)], timeout=60),
        "cluster": ray.cluster_resources(),
        "nodes": len(ray.nodes()),
        "node_id": ray.get_runtime_context().get_node_id(),
        "task": ray.get(where.remote(), timeout=60),
        "driver_pid": os.getpid(),
        "session_dir": ctx["session_dir"],
    }
    ray.shutdown()
    print("RESULT " + json.dumps(out))
    """
)


class StartedHead:
    """A head started with ``microray start --head``; ``stop()`` is safe to call twice."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.pids: dict[str, int] = {}
        self.tree: set[int] = set()

    def start(self, *args: str) -> subprocess.CompletedProcess:
        out = run_cli("start", "--head", *args, env=self.env, cwd=self.cwd)
        record = Path(self.env["MICRORAY_SESSION_ROOT"]) / "current_cluster"
        if record.is_file():
            self.pids = json.loads(record.read_text())["pids"]
        return out

    def snapshot_tree(self) -> set[int]:
        tree: set[int] = set()
        for pid in self.pids.values():
            tree |= _tree(pid)
        self.tree |= tree
        return tree

    def stop(self) -> subprocess.CompletedProcess | None:
        out = None
        try:
            out = run_cli("stop", env=self.env, cwd=self.cwd)
        finally:
            # whatever 'stop' did, nothing we started may outlive the test
            try:
                wait_for(lambda: not any(pid_alive(p) for p in self.tree | set(self.pids.values())),
                         timeout=15, what="the head's processes to exit")
            except AssertionError:
                for pid in self.tree | set(self.pids.values()):
                    if pid_alive(pid):
                        os.kill(pid, signal.SIGKILL)
                raise
        return out


@pytest.fixture
def head(env, tmp_path):
    h = StartedHead(env, tmp_path)
    yield h
    if h.pids:
        h.stop()


def test_start_head_connect_driver_and_stop(head, env, tmp_path):
    out = head.start("--num-cpus", "2")
    assert out.returncode == 0, out.stderr
    assert "GCS address" in out.stdout
    assert set(head.pids) >= {"gcs", "raylet"}
    assert all(pid_alive(pid) for pid in head.pids.values())
    record = json.loads((Path(env["MICRORAY_SESSION_ROOT"]) / "current_cluster").read_text())
    assert record["gcs_address"] in out.stdout

    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    drv = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert drv.returncode == 0, drv.stderr[-3000:]
    line = [ln for ln in drv.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, drv.stdout + drv.stderr[-3000:]
    result = json.loads(line[0][len("RESULT "):])
    assert result["squares"] == [i * i for i in range(50)]
    assert result["cluster"]["CPU"] == 2.0
    assert result["nodes"] == 1
    assert result["node_id"] == record["node_id"]
    task_pid, task_node = result["task"]
    assert task_node == record["node_id"]
    assert task_pid != result["driver_pid"]
    assert result["session_dir"] == record["session_dir"]

    # the head outlives its driver
    assert all(pid_alive(pid) for pid in head.pids.values())
    tree = head.snapshot_tree()
    assert task_pid in tree, "the task's worker is not a descendant of the started head"
    assert len(tree) >= 4  # gcs, raylet, zygote, worker(s)

    stopped = head.stop()
    assert stopped.returncode == 0, stopped.stderr
    assert "Stopped" in stopped.stdout
    wait_for(lambda: not any(pid_alive(p) for p in tree), timeout=15, what="every process of the head to exit")
    assert not (Path(env["MICRORAY_SESSION_ROOT"]) / "current_cluster").exists()
    head.pids = {}


def test_stop_force_leaves_no_process(head, env, tmp_path):
    out = head.start("--num-cpus", "2")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: len(head.snapshot_tree()) >= 4, timeout=30, what="gcs, raylet, zygote and workers to run")
    tree = set(head.tree)
    stopped = run_cli("stop", "--force", env=env, cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    # SIGKILLed GCS and raylet: the zygote and the workers must still go (they die with their parent)
    wait_for(lambda: not any(pid_alive(p) for p in tree), timeout=15,
             what=f"every process of the head to exit (left: {[p for p in tree if pid_alive(p)]})")
    assert not (Path(env["MICRORAY_SESSION_ROOT"]) / "current_cluster").exists()
    head.pids = {}


def test_stop_without_a_cluster(env, tmp_path):
    out = run_cli("stop", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "No running microray cluster" in out.stdout


def test_driver_auto_without_a_cluster_fails_clearly(env, tmp_path):
    code = "import microray as ray\ntry:\n    ray.init(address='auto')\nexcept ConnectionError as e:\n    print('ERR', e)\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert "ERR" in out.stdout and "microray start --head" in out.stdout


def test_second_start_is_refused_while_one_runs(head, env, tmp_path):
    out = head.start("--num-cpus", "1")
    assert out.returncode == 0, out.stderr
    first = dict(head.pids)
    again = run_cli("start", "--head", env=env, cwd=tmp_path)
    assert again.returncode != 0
    assert "already running" in (again.stderr + again.stdout)
    # the first head is untouched
    assert json.loads((Path(env["MICRORAY_SESSION_ROOT"]) / "current_cluster").read_text())["pids"] == first
    assert all(pid_alive(pid) for pid in first.values())
    head.snapshot_tree()
    assert head.stop().returncode == 0
    head.pids = {}


def test_start_with_an_unknown_backend_fails_before_starting(env, tmp_path):
    out = run_cli("start", "--head", "--object-store", "shmm", env=env, cwd=tmp_path)
    try:
        assert out.returncode != 0
        err = out.stderr + out.stdout
        assert "shmm" in err and "did you mean 'shm'" in err
        assert not (Path(env["MICRORAY_SESSION_ROOT"]) / "current_cluster").exists()
    finally:
        if (Path(env["MICRORAY_SESSION_ROOT"]) / "current_cluster").exists():
            run_cli("stop", env=env, cwd=tmp_path)


def test_start_without_head_is_a_usage_error(env, tmp_path):
    out = run_cli("start", env=env, cwd=tmp_path)
    assert out.returncode == 2
    assert "--head" in out.stderr
    assert not (Path(env["MICRORAY_SESSION_ROOT"]) / "current_cluster").exists()


# -- the embedded head and the life of its driver -----------------------------------------------------
EMBEDDED_DRIVER = textwrap.dedent(
    """
    import json, os, signal, sys
    import numpy as np
    import microray as ray

    ray.init(num_cpus=2)

    @ray.remote
    def pid():
        return os.getpid()

    keep = ray.put(np.ones(2_000_000))  # an object in the store when the driver goes
    info = {
        "namespace": ray.api._worker.store_namespace,
        "head": ray.api._head.pids,
        "workers": sorted(set(ray.get([pid.remote() for _ in range(4)], timeout=60))),
    }
    print("INFO " + json.dumps(info), flush=True)
    how = sys.argv[1]
    if how == "shutdown":
        ray.shutdown()
    elif how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    # "return": fall off the end, the atexit hooks clean up
    """
)


def _run_embedded_driver(how: str, env: dict[str, str], tmp_path: Path) -> dict:
    script = tmp_path / "embedded_driver.py"
    script.write_text(EMBEDDED_DRIVER)
    out = subprocess.run([sys.executable, str(script), how], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("INFO ")]
    assert line, out.stdout + out.stderr[-3000:]
    return json.loads(line[0][len("INFO "):])


def _shm_entries(namespace: str) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if namespace in n]


def _remove_shm(namespace: str) -> None:
    """Do not leave a leak we found behind for the rest of the machine."""
    import shutil

    for name in _shm_entries(namespace):
        shutil.rmtree(os.path.join("/dev/shm", name), ignore_errors=True)


@pytest.mark.parametrize("how", ["shutdown", "return"])
def test_embedded_head_ends_with_its_driver(env, tmp_path, how):
    info = _run_embedded_driver(how, env, tmp_path)
    pids = [*info["head"].values(), *info["workers"]]
    try:
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=15,
                 what=f"the driver's node processes to exit (left: {[p for p in pids if pid_alive(p)]})")
        wait_for(lambda: not _shm_entries(info["namespace"]), timeout=15,
                 what=f"/dev/shm entries of {info['namespace']} to go (left: {_shm_entries(info['namespace'])})")
    finally:
        _remove_shm(info["namespace"])


def test_killed_driver_leaves_no_process(env, tmp_path):
    info = _run_embedded_driver("sigkill", env, tmp_path)
    pids = [*info["head"].values(), *info["workers"]]
    try:
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=15,
                 what=f"the killed driver's node processes to exit (left: {[p for p in pids if pid_alive(p)]})")
    finally:
        _remove_shm(info["namespace"])


def test_killed_driver_leaves_no_shared_memory(env, tmp_path):
    # Every process of the killed driver's node dies with it (nothing is left to clean
    # up), so the namespace whose raylet is gone is swept by the next raylet that starts.
    info = _run_embedded_driver("sigkill", env, tmp_path)
    pids = [*info["head"].values(), *info["workers"]]
    try:
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=15, what="the node processes to exit")
        ray.init(num_cpus=1)
        ray.shutdown()
        wait_for(lambda: not _shm_entries(info["namespace"]), timeout=5,
                 what=f"/dev/shm entries of {info['namespace']} to be swept by the next node")
    finally:
        _remove_shm(info["namespace"])
