"""A head started with ``microray start --head`` in a folder of its own (so nothing of the
drivers' folders is on its workers' path), shared by the tests of a module, and helpers
to write a driver's project folder and run drivers from it.

The head's ``runtime_env_max_bytes`` is 2 MB, so a test can pass it with a 3 MB file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from microray.testing.processes import driver_code, pid_alive, wait_for

MAX_BYTES = 2_000_000
TIMEOUT = 180


class Head:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.pids: dict[str, int] = {}

    def cli(self, *args: str, cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "microray.cli", *args], env=self.env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)

    def driver(self, body: str, cwd: Path, check: bool = True, args: list[str] | None = None) -> subprocess.CompletedProcess:
        """Run ``body`` as a driver script ``drv.py`` in ``cwd`` (its folder is on the
        driver's path, as for ``python drv.py``) with ``args``; ``check``: fail on a non-zero exit."""
        script = cwd / "drv.py"
        script.write_text(driver_code(body))
        proc = subprocess.run([sys.executable, str(script), *(args or [])], env=self.env, cwd=cwd,
                              capture_output=True, text=True, timeout=TIMEOUT)
        if check:
            assert proc.returncode == 0, f"driver failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
        return proc

    def results(self, proc: subprocess.CompletedProcess) -> dict[str, Any]:
        """The driver's ``RESULT {json}`` line."""
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise AssertionError(f"no RESULT line:\n{proc.stdout}\n{proc.stderr[-4000:]}")

    def session_dir(self) -> Path:
        return Path(json.loads((self.root / "current_cluster").read_text())["session_dir"])

    def tree(self) -> set[int]:
        out: set[int] = set()
        for pid in self.pids.values():
            try:
                p = psutil.Process(pid)
                out |= {pid, *(c.pid for c in p.children(recursive=True))}
            except psutil.NoSuchProcess:
                pass
        return out


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    root = tmp_path_factory.mktemp("sessions")
    elsewhere = tmp_path_factory.mktemp("head_cwd")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRORAY_")}
    env.update(MICRORAY_SESSION_ROOT=str(root), MICRORAY_DASHBOARD_PORT="0",
               MICRORAY_RUNTIME_ENV_MAX_BYTES=str(MAX_BYTES))
    env.pop("PYTHONPATH", None)
    h = Head(root, env)
    out = h.cli("start", "--head", "--num-cpus", "2", "--dashboard", "web", cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    h.pids = json.loads((root / "current_cluster").read_text())["pids"]
    # drivers find the cluster by address="auto"; the limit is the cluster's, not theirs
    h.env = {k: v for k, v in env.items() if k != "MICRORAY_RUNTIME_ENV_MAX_BYTES"}
    try:
        yield h
    finally:
        tree = h.tree()
        h.cli("stop", cwd=elsewhere)
        try:
            wait_for(lambda: not any(pid_alive(p) for p in tree | set(h.pids.values())), timeout=20,
                     what="the head's processes to exit")
        except AssertionError:
            for pid in tree:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            raise


def write_project(folder: Path, value: str, extra: dict[str, str] | None = None) -> Path:
    """A driver's project folder: ``mymod.py`` whose ``value()`` returns ``value``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mymod.py").write_text(f"def value():\n    return {value!r}\n")
    for name, text in (extra or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder
