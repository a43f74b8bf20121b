"""runtime_env working_dir / py_modules against a ``microray start --head`` cluster whose
workers do not have the drivers' folders on their path: a driver's local module imports
in its tasks only through the runtime env."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import MAX_BYTES, Head, write_project

pytestmark = pytest.mark.timeout(300)

# A task (and a task it submits, and an actor) that import the driver's local module.
USES_MYMOD = """
import json
import mymod

ray.init(address="auto"{init_args})

@ray.remote
def where():  # mymod is pickled by reference: the worker imports it to load the function
    return {{"value": mymod.value(), "cwd": os.getcwd(), "pid": os.getpid(),
            "data": open("data.txt").read() if os.path.exists("data.txt") else None}}

@ray.remote
def parent():
    return ray.get(where.remote())  # a nested task inherits the runtime env

@ray.remote
class Holder:
    def where(self):
        return {{"value": mymod.value(), "cwd": os.getcwd(), "pid": os.getpid()}}

out = {{"task": ray.get(where.remote(), timeout=120), "nested": ray.get(parent.remote(), timeout=120)}}
holder = Holder.remote()
out["actor"] = ray.get(holder.where.remote(), timeout=120)
print("RESULT " + json.dumps(out), flush=True)
ray.shutdown()
"""


def _package_keys(head: Head, tmp_path: Path) -> list[str]:
    """The keys of the GCS KV's runtime_env namespace."""
    folder = tmp_path / "kv"
    folder.mkdir(exist_ok=True)
    proc = head.driver("""
        import json
        from microray.util.state import StateClient
        from microray.protocol import gcs_pb2
        from microray import node, config
        gcs = node.current_cluster(config.resolve({}).session_root).gcs_address
        with StateClient(gcs) as c:
            keys = c.gcs.KvKeys(gcs_pb2.KvKeysRequest(ns="runtime_env", prefix=b"pkg:"), timeout=10).keys
        print("RESULT " + json.dumps(sorted(k.decode() for k in keys)), flush=True)
    """, folder)
    return head.results(proc)


def _unpack_events(head: Head) -> list[str]:
    logs = head.session_dir() / "logs"
    events = []
    for path in sorted(logs.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if "runtime_env_package_unpacked" in line:
                events.append(line)
    return events


def test_a_local_module_imports_in_tasks_only_with_working_dir(head: Head, tmp_path: Path) -> None:
    proj = write_project(tmp_path / "proj", "from proj", {"data.txt": "read from the working dir"})
    failed = head.driver(USES_MYMOD.format(init_args=""), proj, check=False)
    assert failed.returncode != 0
    assert "No module named 'mymod'" in failed.stderr, failed.stderr[-3000:]
    assert "runtime_env={'working_dir'" in failed.stderr  # the way out

    proc = head.driver(USES_MYMOD.format(init_args=', runtime_env={"working_dir": "."}'), proj)
    out = head.results(proc)
    for what in ("task", "nested", "actor"):
        assert out[what]["value"] == "from proj", what
        # the worker runs in the node's unpacked copy, not in the driver's folder
        assert re.search(r"/runtime_resources/[0-9a-f]{40}$", out[what]["cwd"]), out[what]
        assert Path(out[what]["cwd"]).parent.parent == head.session_dir()
    assert out["task"]["data"] == "read from the working dir"


def test_py_modules_put_a_package_and_a_file_on_the_path(head: Head, tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    (libs / "mypkg").mkdir(parents=True)
    (libs / "mypkg" / "__init__.py").write_text("from .inner import NAME\n")
    (libs / "mypkg" / "inner.py").write_text("NAME = 'mypkg'\n")
    (libs / "single.py").write_text("NAME = 'single'\n")
    drv = tmp_path / "drv"
    drv.mkdir()
    proc = head.driver(f"""
        import json
        ray.init(address="auto")

        @ray.remote(runtime_env={{"py_modules": [{str(libs / 'mypkg')!r}, {str(libs / 'single.py')!r}]}})
        def names():
            import mypkg, single
            return [mypkg.NAME, single.NAME]

        @ray.remote
        def without():
            try:
                import mypkg  # noqa: F401
            except ImportError as exc:
                return str(exc)
            return "imported"

        print("RESULT " + json.dumps([ray.get(names.remote(), timeout=120),
                                      ray.get(without.remote(), timeout=120)]), flush=True)
    """, drv)
    with_modules, without = head.results(proc)
    assert with_modules == ["mypkg", "single"]
    assert "No module named 'mypkg'" in without


def test_the_size_limit_and_excludes(head: Head, tmp_path: Path) -> None:
    proj = write_project(tmp_path / "big", "small enough")
    (proj / "data").mkdir()
    (proj / "data" / "big.bin").write_bytes(b"\0" * (MAX_BYTES + 1_000_000))
    proc = head.driver(USES_MYMOD.format(init_args=', runtime_env={"working_dir": "."}'), proj, check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert "over the limit of" in err and str(MAX_BYTES) in err, err[-3000:]
    assert "data/big.bin" in err and "excludes" in err and "runtime_env_max_bytes" in err

    body = USES_MYMOD.format(init_args=', runtime_env={"working_dir": ".", "excludes": ["data/"]}')
    body = body.replace('"data": open("data.txt").read() if os.path.exists("data.txt") else None',
                        '"data": os.path.exists("data/big.bin")')
    out = head.results(head.driver(body, proj))
    assert out["task"]["value"] == "small enough"
    assert out["task"]["data"] is False  # left out of the package


# Two tasks that run at once (each waits until both have started): two worker processes
# of the runtime env start together on the node.
TWO_AT_ONCE = """
import json
import mymod

ray.init(address="auto", runtime_env={"working_dir": "."})

@ray.remote
def meet(folder):
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 90
    while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"value": mymod.value(), "cwd": os.getcwd(), "pid": os.getpid(), "met": len(os.listdir(folder))}

print("RESULT " + json.dumps(ray.get([meet.remote(sys.argv[1]), meet.remote(sys.argv[1])], timeout=150)), flush=True)
ray.shutdown()
"""


def test_stored_once_and_unpacked_once_per_node(head: Head, tmp_path: Path) -> None:
    proj = write_project(tmp_path / "once", "once")
    runs = []
    for i in range(2):  # a second driver with the same folder: the same package
        meet = tmp_path / f"meet{i}"
        meet.mkdir()
        runs.append(head.results(head.driver(TWO_AT_ONCE, proj, args=[str(meet)])))
        if i == 0:
            sha = Path(runs[0][0]["cwd"]).name
            keys = [k for k in _package_keys(head, tmp_path) if k.startswith(f"pkg:{sha}")]
            assert keys == [f"pkg:{sha}", f"pkg:{sha}:0"]  # the manifest and one chunk
    for run in runs:
        assert [r["met"] for r in run] == [2, 2] and run[0]["pid"] != run[1]["pid"]  # two workers at once
        assert {r["value"] for r in run} == {"once"} and {Path(r["cwd"]).name for r in run} == {sha}
    # not stored again; unpacked once by the node, into one folder, nothing half-done left
    assert [k for k in _package_keys(head, tmp_path) if k.startswith(f"pkg:{sha}")] == keys
    events = [e for e in _unpack_events(head) if sha in e]
    assert len(events) == 1, events
    resources = head.session_dir() / "runtime_resources"
    assert sorted(p.name for p in resources.iterdir() if p.name.startswith(sha)) == [sha, sha + ".lock"]


def test_a_task_runtime_env_over_the_jobs(head: Head, tmp_path: Path) -> None:
    job_dir = write_project(tmp_path / "job", "job's")
    other = write_project(tmp_path / "other", "task's")
    proc = head.driver(f"""
        import json
        ray.init(address="auto", runtime_env={{"working_dir": ".", "env_vars": {{"FROM_JOB": "1"}}}})

        @ray.remote
        def where():
            import mymod
            return [mymod.value(), os.getpid(), os.environ.get("FROM_JOB"), os.environ.get("FROM_TASK")]

        job = ray.get(where.remote(), timeout=120)
        task = ray.get(where.options(runtime_env={{"working_dir": {str(other)!r},
                                                  "env_vars": {{"FROM_TASK": "2"}}}}).remote(), timeout=120)
        again = ray.get(where.remote(), timeout=120)
        print("RESULT " + json.dumps([job, task, again]), flush=True)
    """, job_dir)
    job, task, again = head.results(proc)
    assert job[0] == "job's" and again[0] == "job's"
    assert task[0] == "task's"
    assert task[2:] == ["1", "2"]  # env_vars merge; working_dir is the task's
    assert job[2:] == ["1", None]
    assert task[1] not in (job[1], again[1])  # never one worker process for two envs


def test_job_submit_working_dir(head: Head, tmp_path: Path) -> None:
    proj = write_project(tmp_path / "submitted", "submitted", {
        "script.py": (
            "import os, mymod\n"
            "import microray as ray\n"
            "ray.init()\n"
            "@ray.remote\n"
            "def f():\n"
            "    import mymod\n"
            "    return mymod.value(), os.getcwd()\n"
            "value, task_cwd = ray.get(f.remote(), timeout=120)\n"
            "print('DRIVER_CWD', os.getcwd())\n"
            "print('TASK', value, task_cwd)\n"
            "print('LOCAL', mymod.value())\n"
        ),
    })
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = head.cli("job", "submit", "--working-dir", str(proj), "--", "python", "script.py", cwd=elsewhere)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("DRIVER_CWD", "TASK", "LOCAL")))
    assert lines["LOCAL"] == "submitted"
    driver_cwd = lines["DRIVER_CWD"]
    assert re.search(r"/runtime_resources/[0-9a-f]{40}$", driver_cwd), driver_cwd
    value, task_cwd = lines["TASK"].split(" ", 1)
    assert value == "submitted"
    assert Path(task_cwd).name == Path(driver_cwd).name  # the job's tasks got its runtime env
    assert json.dumps(str(proj)) not in driver_cwd
