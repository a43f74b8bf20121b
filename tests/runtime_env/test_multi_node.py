"""A working_dir on two nodes of one machine (``microray.cluster_utils.Cluster``): each node
unpacks the package into its own session folder, and a task on the second node imports
the driver's module from there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from microray.testing.processes import driver_code

from .conftest import TIMEOUT, write_project

cluster_utils = pytest.importorskip("microray.cluster_utils", reason="needs microray.cluster_utils.Cluster")

pytestmark = pytest.mark.timeout(300)

DRIVER = """
import json
import mymod

ray.init(address=sys.argv[1], runtime_env={"working_dir": "."})

@ray.remote
def where():
    import mymod
    return {"value": mymod.value(), "cwd": os.getcwd(), "node": ray.get_runtime_context().get_node_id()}

on_head = ray.get(where.options(resources={"head_only": 1}).remote(), timeout=120)
on_second = ray.get(where.options(resources={"second": 1}).remote(), timeout=120)
print("RESULT " + json.dumps({"head": on_head, "second": on_second}), flush=True)
ray.shutdown()
"""


def test_a_task_on_a_second_node_imports_from_that_nodes_copy(tmp_path: Path) -> None:
    proj = write_project(tmp_path / "proj", "two nodes")
    cluster = cluster_utils.Cluster(session_root=str(tmp_path / "sessions"))
    try:
        head = cluster.add_node(num_cpus=1, resources={"head_only": 1})
        second = cluster.add_node(num_cpus=1, resources={"second": 1})
        cluster.wait_for_nodes()
        (proj / "drv.py").write_text(driver_code(DRIVER))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MICRORAY_")}
        env["MICRORAY_SESSION_ROOT"] = cluster.session_root
        proc = subprocess.run([sys.executable, str(proj / "drv.py"), cluster.address], cwd=proj, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
        out = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
        assert out["head"]["value"] == out["second"]["value"] == "two nodes"
        assert out["second"]["node"] == second.node_id and out["head"]["node"] == head.node_id
        sha = Path(out["head"]["cwd"]).name
        # one package, unpacked by each node into its own session folder
        assert out["head"]["cwd"] == str(Path(head.session_dir) / "runtime_resources" / sha)
        assert out["second"]["cwd"] == str(Path(second.session_dir) / "runtime_resources" / sha)
    finally:
        cluster.shutdown()
