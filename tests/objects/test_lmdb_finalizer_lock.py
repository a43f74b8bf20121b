"""A view of an LMDB object may be collected at any allocation, in any thread -- also in
the thread that holds the process's registry of LMDB environments (the garbage collector
ran inside ``open_shared_env``). Its finalizer ends the view's read transaction and then
checks whether the environment can close; that check must not wait for the lock its own
thread holds (it hung a test for 300 s)."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("lmdb")

from microray.backends.object_store import _lmdb_env  # noqa: E402
from microray.testing.processes import wait_for  # noqa: E402


def test_a_view_ended_while_its_thread_holds_the_registry_lock_returns_and_closes_later(tmp_path):
    env = _lmdb_env.open_shared_env(str(tmp_path / "env"), initial_size=1 << 20, cap=1 << 24,
                                    max_readers=16, sync=False)
    env.write(lambda txn: txn.put(b"key", b"v" * 100, db=env.objects), 100, lambda: "key")
    pinned = env.pin(b"key")
    assert pinned is not None
    pin = pinned[0]
    env.release()  # no store instance uses it any more; the pin keeps it open
    assert not env.closed

    returned = threading.Event()

    def finalizer_under_the_lock() -> None:
        with _lmdb_env._ENVS_LOCK:
            env.unpin(pin)  # what the view's finalizer does when the collector runs here
            returned.set()

    thread = threading.Thread(target=finalizer_under_the_lock, daemon=True)
    thread.start()
    assert returned.wait(30), "ending a view under the registry lock waited for that lock"
    thread.join(30)
    # closed by the deferred check once the lock was let go
    wait_for(lambda: env.closed, timeout=30, what="the environment to close")
    assert env.live_pins == 0
