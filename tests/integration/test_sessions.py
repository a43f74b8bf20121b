"""Session folders: old ones are removed (the newest ``session_keep`` kept), a live
session's folder never is, and the session root is this user's alone (0700)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import microray as ray
from microray import node, session
from microray.exceptions import RaySystemError
from microray.testing.processes import driver_env, read_marker

LONG_AGO = time.time() - 3600


def finished_session(root: Path, stamp: str, pids: dict | None = None) -> Path:
    """A folder like one a finished session leaves (logs, a record), last changed an hour ago."""
    path = root / f"session_{stamp}_1_abcdef"
    (path / "logs").mkdir(parents=True)
    (path / "logs" / "gcs.log").write_text("{}\n")
    (path / "address.json").write_text(json.dumps({"pids": pids or {"gcs": 0}}))
    for p in (path / "logs" / "gcs.log", path / "logs", path / "address.json", path):
        os.utime(p, (LONG_AGO, LONG_AGO))
    return path


HOLDER = """
import sys
from microray import session
session.hold(sys.argv[1])
print("HELD", flush=True)
sys.stdin.read()
"""


def test_prune_keeps_the_newest_and_every_live_session(tmp_path):
    root = tmp_path / "sessions"
    session.ensure_root(str(root))
    old = [finished_session(root, f"2026-01-0{i}_00-00-00") for i in range(1, 7)]
    held = finished_session(root, "2025-12-01_00-00-00")  # oldest, but a process holds it
    running = finished_session(root, "2025-12-02_00-00-00", pids={"gcs": os.getpid()})
    recent = finished_session(root, "2025-12-03_00-00-00")
    os.utime(recent / "logs", None)  # changed just now: may be a session still starting
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(held)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=driver_env())
    try:
        read_marker(holder, "HELD", timeout=60)
        removed = session.prune(str(root), keep=2)
        assert sorted(removed) == sorted(map(str, old[:4]))
        assert sorted(p.name for p in root.iterdir()) == sorted(
            p.name for p in (*old[4:], held, running, recent))
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # the holder exited: its lock is gone with it, and the folder with the next prune
    assert str(held) in session.prune(str(root), keep=2)


def test_a_new_session_prunes_old_ones_but_never_a_live_cluster(tmp_path, make_cluster):
    root = tmp_path / "sessions"
    session.ensure_root(str(root))
    old = [finished_session(root, f"2026-01-0{i}_00-00-00") for i in range(1, 5)]
    live = make_cluster(num_cpus=1, include_dashboard=False, session_root=str(root), session_keep=2).session_dir
    names = sorted(p.name for p in root.iterdir() if p.name != session.LATEST)
    # the live session and the newest finished one are the two kept
    assert names == sorted([old[-1].name, os.path.basename(live)])
    # the node's processes hold it (the driver released it): even keeping none, a prune
    # leaves it alone -- also with its record gone, which a crashed start leaves
    os.unlink(os.path.join(live, "address.json"))
    os.utime(live, (LONG_AGO, LONG_AGO))
    os.utime(os.path.join(live, "logs"), (LONG_AGO, LONG_AGO))
    assert session.prune(str(root), keep=0) == [str(old[-1])]
    assert os.path.isdir(live) and stat.S_IMODE(os.stat(live).st_mode) == 0o700

    @ray.remote
    def one():
        return 1

    assert ray.get(one.remote(), timeout=60) == 1


def test_session_keep_zero_keeps_every_folder(tmp_path):
    root = tmp_path / "sessions"
    session.ensure_root(str(root))
    old = [finished_session(root, f"2026-01-0{i}_00-00-00") for i in range(1, 4)]
    path = session.new_session_dir(str(root), keep=0)
    try:
        assert all(p.exists() for p in old)
    finally:
        session.release(path)


def test_the_session_root_is_private(tmp_path):
    root = tmp_path / "shared"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    session.ensure_root(str(root))
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    made = tmp_path / "new" / "root"
    session.ensure_root(str(made))
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    if os.getuid() != 0:
        pytest.skip("handing a folder to another user needs root")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)
    with pytest.raises(RaySystemError, match="owned by uid 65534"):
        session.new_session_dir(str(foreign))
    assert list(foreign.iterdir()) == []


def test_a_record_others_could_have_written_is_ignored(tmp_path):
    root = tmp_path / "sessions"
    session.ensure_root(str(root))
    record = root / node.CURRENT
    record.write_text(json.dumps({"gcs_address": "127.0.0.1:1", "raylet_address": "127.0.0.1:2", "node_id": "n",
                                  "session_dir": str(root), "store_namespace": "x", "pids": {"gcs": os.getpid()}}))
    os.chmod(record, 0o666)
    assert node.current_cluster(str(root)) is None
    os.chmod(record, 0o600)
    assert node.current_cluster(str(root)) is not None


def test_a_head_whose_gcs_port_was_taken_meanwhile_starts_on_another(make_cluster, monkeypatch):
    """The GCS port, when not configured, is one free when chosen; another process can
    take it before the GCS binds it. The head then starts again on another port."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)  # held: the GCS cannot bind it
    chosen: list[int] = []
    free_port = node.free_port

    def first_one_taken(host: str) -> int:
        chosen.append(taken.getsockname()[1] if not chosen else free_port(host))
        return chosen[-1]

    monkeypatch.setattr(node, "free_port", first_one_taken)
    try:
        make_cluster(num_cpus=1)
        gcs_address = ray.api._worker.gcs_address
        assert len(chosen) == 2 and gcs_address.endswith(f":{chosen[1]}"), (chosen, gcs_address)

        @ray.remote
        def one() -> int:
            return 1

        assert ray.get(one.remote(), timeout=60) == 1
    finally:
        taken.close()
