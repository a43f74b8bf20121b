"""The token of a started head: ``microray token`` prints it, drivers on this machine
find it with ``address="auto"`` (or the GCS address), a driver with a wrong
``MICRORAY_TOKEN`` is refused with a message that says so, and ``microray token`` says
clearly when no cluster runs here. Each test has its own session root."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from microray.testing.processes import driver_code

pytestmark = pytest.mark.timeout(240)


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("microray")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "microray.cli"]
    return subprocess.run([*argv, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=90)


def _driver(body: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", driver_code(body)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("MICRORAY_")}
    out["MICRORAY_SESSION_ROOT"] = str(tmp_path / "sessions")
    out["MICRORAY_DASHBOARD"] = "none"
    return out


@pytest.fixture
def head(env, tmp_path):
    started = _cli("start", "--head", "--num-cpus", "1", env=env, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    try:
        yield started
    finally:
        stopped = _cli("stop", env=env, cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr


def test_token_command_and_drivers_on_this_machine(head, env, tmp_path):
    printed = _cli("token", env=env, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    token = printed.stdout.strip()
    assert len(token) >= 32
    assert token not in head.stdout and token not in head.stderr  # start names the command, not the token
    root = Path(env["MICRORAY_SESSION_ROOT"])
    record = root / "current_cluster"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    session = Path(next(line.split(":", 1)[1].strip() for line in head.stdout.splitlines() if "Session:" in line))
    assert stat.S_IMODE((session / "cluster_token").stat().st_mode) == 0o600
    assert (session / "cluster_token").read_text().strip() == token
    ran = _driver("""
        ray.init(address="auto")
        print("RESULT", ray.get(ray.remote(lambda: 6 * 7).remote()))
        """, env, tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "RESULT 42" in ran.stdout
    # a driver given the token explicitly, as one on another machine would be
    gcs = next(line.split(":", 1)[1].strip() for line in head.stdout.splitlines() if "GCS address:" in line)
    ran = _driver(f"""
        ray.init(address="{gcs}")
        print("RESULT", ray.get(ray.remote(lambda: 1 + 1).remote()))
        """, {**env, "MICRORAY_TOKEN": token, "MICRORAY_SESSION_ROOT": str(tmp_path / "elsewhere")}, tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "RESULT 2" in ran.stdout


def test_a_driver_with_a_wrong_or_no_token_is_refused(head, env, tmp_path):
    gcs = next(line.split(":", 1)[1].strip() for line in head.stdout.splitlines() if "GCS address:" in line)
    wrong = _driver(f'ray.init(address="{gcs}")', {**env, "MICRORAY_TOKEN": "not-the-token"}, tmp_path)
    assert wrong.returncode != 0
    assert "UNAUTHENTICATED" in wrong.stderr and "wrong cluster token" in wrong.stderr, wrong.stderr[-2000:]
    # another machine's view: no local cluster record, no token given
    none = _driver(f'ray.init(address="{gcs}")', {**env, "MICRORAY_SESSION_ROOT": str(tmp_path / "elsewhere")},
                   tmp_path)
    assert none.returncode != 0
    assert "needs its cluster token" in none.stderr and "MICRORAY_TOKEN" in none.stderr, none.stderr[-2000:]


def test_token_command_without_a_cluster(env, tmp_path):
    out = _cli("token", env=env, cwd=tmp_path)
    assert out.returncode != 0
    assert "no microray cluster is running on this machine" in out.stderr


def test_a_node_on_another_machine_joins_only_with_the_token(head, env, tmp_path):
    """Another "machine" (its own session root) finds no token by itself: without one it is
    told to give it, with a wrong one its raylet is refused, with the right one it joins,
    keeps the token 0600 in its session, and its raylet refuses calls without it."""
    from microray import rpc, session
    from microray.protocol import common_pb2, raylet_pb2_grpc
    from microray.util.state import StateClient

    from .conftest import channel, refused_by

    gcs = next(line.split(":", 1)[1].strip() for line in head.stdout.splitlines() if "GCS address:" in line)
    token = _cli("token", env=env, cwd=tmp_path).stdout.strip()
    other = {**env, "MICRORAY_SESSION_ROOT": str(tmp_path / "other-machine")}
    out = _cli("start", f"--address={gcs}", "--num-cpus", "1", env=other, cwd=tmp_path)
    assert out.returncode != 0 and "needs its cluster token" in out.stderr, out.stderr[-2000:]
    out = _cli("start", f"--address={gcs}", "--num-cpus", "1", env={**other, "MICRORAY_TOKEN": "not-the-token"},
               cwd=tmp_path)
    assert out.returncode != 0 and "UNAUTHENTICATED" in out.stderr, out.stderr[-2000:]
    assert "not-the-token" not in out.stderr
    try:
        out = _cli("start", f"--address={gcs}", "--num-cpus", "1", env={**other, "MICRORAY_TOKEN": token},
                   cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        node_session = Path(next(line.split(":", 1)[1].strip() for line in out.stdout.splitlines()
                                 if "Session:" in line))
        assert stat.S_IMODE((node_session / "cluster_token").stat().st_mode) == 0o600
        with StateClient(gcs, token=token) as c:
            joined = [n for n in c.nodes() if n["state"] == "ALIVE"]
        assert len(joined) == 2
        raylet = next(f"{n['node_ip']}:{n['raylet_port']}" for n in joined if not n["is_head_node"])
        for bad in (None, "not-the-token"):
            with channel(raylet, bad) as ch:
                refused_by(lambda: raylet_pb2_grpc.RayletStub(ch).GetNodeStats(common_pb2.Empty(), timeout=10),
                           token, bad)
        with rpc.blocking_channel(raylet, rpc.Credentials(session.read_token(str(node_session)))) as ch:
            raylet_pb2_grpc.RayletStub(ch).GetNodeStats(common_pb2.Empty(), timeout=10)
    finally:
        stopped = _cli("stop", env=other, cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
