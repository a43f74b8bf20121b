"""``import microray`` and building the plugin manager stay light.

Backends import their heavy dependency inside their factory, so neither
importing the package nor loading every plugin and describing them may import
a client library or the RPC stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("redis", "pyetcd", "etcd3", "lmdb", "grpc", "aiohttp", "numpy")

_PROBE = f"""
import json, sys
heavy = {HEAVY!r}
def loaded():
    return sorted({{m.split('.')[0] for m in sys.modules}} & set(heavy))
import microray
after_import = loaded()
from microray.plugin_manager import get_plugin_manager
rows = get_plugin_manager().describe()
print(json.dumps({{"after_import": after_import, "after_describe": loaded(), "rows": len(rows)}}))
"""


def test_import_and_describe_do_not_import_heavy_dependencies() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRORAY_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["after_import"] == []
    assert report["after_describe"] == []
    assert report["rows"] >= 3  # at least the scheduling policies were described
