"""Helpers for the plugin-system tests: real third-party distributions.

Each distribution is a tiny package with a ``pyproject.toml`` declaring a
``[project.entry-points.microray]`` entry, installed with
``pip install --no-deps --target <site>`` into a temporary folder. Tests that
need it run a fresh interpreter with that folder on ``PYTHONPATH``, so the
entry points are discovered exactly as for an installed package, and the test
process's own plugin manager is never polluted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROBE = Path(__file__).with_name("plugin_probe.py")

# name -> (entry point name, module source)
_POLICY = '''
from microray.hookspecs import hookimpl
from microray.registrations import SchedulingPolicyRegistration


class FirstFitPolicy:
    name = "{policy}"

    def select_node(self, request, cluster):
        for node_id in sorted(cluster.nodes):
            node = cluster.nodes[node_id]
            if node.alive and node.fits(request.resources):
                return node_id
        return None


@hookimpl
def microray_scheduling_policies():
    return [SchedulingPolicyRegistration(name="{policy}", factory=FirstFitPolicy,
                                         description="{description}")]
'''

DISTRIBUTIONS: dict[str, tuple[str, str]] = {
    # a working third-party scheduling policy
    "mr_thirdparty_policy": (
        "my_policy",
        _POLICY.format(policy="third_party", description="first fit, from a third party"),
    ),
    # fails at import: must be skipped, logged and reported
    "mr_broken_plugin": (
        "broken",
        'raise ImportError("mr_broken_plugin needs libfrobnicate, which is not installed")\n',
    ),
    # imports fine, but its registration hook raises: skipped and reported too
    "mr_raising_hook": (
        "raising_hook",
        "from microray.hookspecs import hookimpl\n\n"
        "@hookimpl\n"
        "def microray_scheduling_policies():\n"
        "    raise RuntimeError('mr_raising_hook lost its config')\n",
    ),
    # its entry point has the same name as the built-in one ("scheduling")
    "mr_same_ep_name": (
        "scheduling",
        _POLICY.format(policy="same_ep_name", description="entry point named like ours"),
    ),
    # registers "third_party" again: installed into its own site folder
    "mr_dup_policy": (
        "dup_policy",
        _POLICY.format(policy="third_party", description="a second third_party"),
    ),
}


def _write_distribution(root: Path, module: str, ep_name: str, source: str) -> Path:
    pkg = root / module
    (pkg / module).mkdir(parents=True)
    (pkg / module / "__init__.py").write_text(textwrap.dedent(source))
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{module.replace('_', '-')}"
            version = "1.0"

            [project.entry-points.microray]
            {ep_name} = "{module}"

            [tool.setuptools]
            packages = ["{module}"]
            """
        )
    )
    return pkg


def build_sites(root: Path) -> "Sites":
    """Write every distribution under ``root / "src"`` and install them."""
    built = {
        module: _write_distribution(root / "src", module, ep_name, source)
        for module, (ep_name, source) in DISTRIBUTIONS.items()
    }
    main, dup = root / "site", root / "site-dup"
    pip_install(main, [p for m, p in built.items() if m != "mr_dup_policy"])
    pip_install(dup, [built["mr_dup_policy"]])
    return Sites(main=main, dup=dup)


def pip_install(site: Path, packages: Sequence[Path]) -> None:
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
        "--no-build-isolation", "--disable-pip-version-check", "--target", str(site),
        *map(str, packages),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"


@dataclass(frozen=True)
class Sites:
    """Folders with installed test distributions."""

    main: Path  # mr_thirdparty_policy, mr_broken_plugin, mr_raising_hook, mr_same_ep_name
    dup: Path  # mr_dup_policy


def run_probe(
    family: str,
    name: str,
    *,
    paths: Sequence[Path] = (),
    env: dict[str, str] | None = None,
    extra_modules: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``plugin_probe.py`` in a fresh interpreter and return its JSON report."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MICRORAY_")}
    pythonpath = [str(p) for p in paths]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    environ["PYTHONPATH"] = os.pathsep.join(pythonpath)
    environ.update(env or {})
    cmd = [sys.executable, str(PROBE), family, name, *extra_modules]
    done = subprocess.run(cmd, capture_output=True, text=True, env=environ, timeout=120)
    assert done.returncode == 0, f"probe crashed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])
