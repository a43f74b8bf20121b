"""``redis``: a durable GCS store in Redis (redis-py's asyncio client).

Layout, for namespace ``ns`` and table ``t`` (neither may contain ``:``):

- ``ns:t``         a hash holding the table (HSET/HGET/HMGET/HSCAN/HDEL/HEXISTS);
- ``ns:t:events``  a stream with one entry per change (``s`` sequence number,
                   ``o`` ``p``/``d``, ``k`` key, ``v`` value), capped with
                   ``MAXLEN ~ watch_history``;
- ``ns:t:seq``     the counter behind ``s``;
- ``ns:!schema``   the schema version written by ``check_schema``.

Connection: ``redis://`` or ``rediss://`` (TLS: ``ca_file``, optional client
``cert_file``/``key_file``) or ``unix://``; a password in the URL
(``redis://:pw@host``) or the ``password`` option (marked secret: masked in
every config shown). Neither ``repr``, errors nor logs show a password.

Every write is one Lua script that changes the hash *and* appends to the
stream, so the change and its event are atomic and in the same order for all
clients. ``watch`` reads the stream with ``XREAD BLOCK`` from the last entry
it delivered, so after a lost connection or a server restart it resumes
exactly where it stopped; a jump in ``s`` (history trimmed while the watcher
was away) raises ``GcsUnavailableError`` instead of silently losing events.

Failures to reach Redis are retried with backoff for ``retry_timeout``
seconds, then raised as ``GcsUnavailableError``; a single request never waits
longer than ``request_timeout``. A write whose connection broke after it was
sent is retried too, so a ``compare_and_set`` or ``put(overwrite=False)``
that was in fact applied may then report ``False``; read the key if the
difference matters. ``redis`` itself is imported only when a store is built.
"""

from __future__ import annotations

import asyncio
import os
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog

from microray.exceptions import ConfigError, GcsUnavailableError
from microray.gcs.store_support import Backoff, as_bytes, check_name, close_in_loop, schema_mismatch, timeout_options
from microray.hookspecs import hookimpl
from microray.interfaces.gcs_store import WatchEvent
from microray.registrations import GcsStoreRegistration, OptionSpec

log = structlog.get_logger(__name__)

__all__ = ["RedisGcsStore", "microray_gcs_stores"]

T = TypeVar("T")

_WATCH_BLOCK_MS = 1000
_WATCH_BATCH = 512

# KEYS: hash, stream, seq. ARGV[1]: stream MAXLEN. emit() appends one change event.
_EMIT = """
local function emit(op, k, v)
  local s = redis.call('INCR', KEYS[3])
  if v then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 's', s, 'o', op, 'k', k, 'v', v)
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 's', s, 'o', op, 'k', k)
  end
end
"""

# ARGV: maxlen, key, value, overwrite ('1'/'0'). Returns 1 when the key was added.
_PUT = _EMIT + """
local added
if ARGV[4] == '1' then
  added = redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
else
  added = redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3])
  if added == 0 then return 0 end
end
emit('p', ARGV[2], ARGV[3])
return added
"""

# ARGV: maxlen, key1, key2, ... Returns how many existed.
_DELETE = _EMIT + """
local n = 0
for i = 2, #ARGV do
  if redis.call('HDEL', KEYS[1], ARGV[i]) == 1 then
    n = n + 1
    emit('d', ARGV[i], false)
  end
end
return n
"""

# ARGV: maxlen, key, value, has_expected ('1'/'0'), expected. Returns 1 when set.
_CAS = _EMIT + """
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if ARGV[4] == '0' then
  if cur then return 0 end
elseif (not cur) or cur ~= ARGV[5] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
emit('p', ARGV[2], ARGV[3])
return 1
"""

# KEYS[1]: schema key; ARGV[1]: version. Returns the stored version (set if absent).
_SCHEMA = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return cur
"""


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _describe(exc: BaseException) -> str:
    """``Type: message``, plus the operating system's reason when redis-py hides it."""
    text = f"{type(exc).__name__}: {exc}"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror and cause.strerror not in text:
            return f"{text} ({cause.strerror})"
        cause = cause.__cause__ or cause.__context__
    if "Error 111 " in text:  # redis-py formats ECONNREFUSED without its text
        text += " (Connection refused)"
    return text


def _tls_options(scheme: str, ca_file: str, cert_file: str, key_file: str) -> dict[str, Any]:
    """redis-py's TLS arguments for the ``ca_file``/``cert_file``/``key_file`` options, each file
    checked now (a ``ConfigError`` at start, not an outage later)."""
    files = {"ssl_ca_certs": ("ca_file", ca_file), "ssl_certfile": ("cert_file", cert_file),
             "ssl_keyfile": ("key_file", key_file)}  # fmt: skip
    given = {arg: path for arg, (_, path) in files.items() if path}
    if not given:
        return {}
    if scheme != "rediss":
        raise ConfigError(
            "gcs_store_options: ca_file/cert_file/key_file are set for gcs_store 'redis' but the URL "
            "is not rediss://; expected a rediss:// URL for TLS"
        )
    if bool(cert_file) != bool(key_file):
        raise ConfigError(
            "gcs_store_options: a client certificate needs both cert_file and key_file for "
            "gcs_store 'redis'; expected both or neither"
        )
    for arg, path in given.items():
        option = files[arg][0]
        try:
            with open(os.path.expanduser(path), "rb"):
                pass
        except OSError as exc:
            raise ConfigError(
                f"gcs_store_options.{option}: cannot read {path!r} for gcs_store 'redis': "
                f"{exc.strerror or exc}; expected a readable PEM file"
            ) from None
        given[arg] = os.path.expanduser(path)
    return given


def _glob_escape(prefix: bytes) -> bytes:
    return re.sub(rb"([*?\[\]\\])", rb"\\\1", prefix)


class RedisGcsStore:
    """A ``GcsStore`` backed by one Redis server. See the module docstring."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "default",
        connect_timeout: float = 3.0,
        request_timeout: float = 10.0,
        retry_timeout: float = 5.0,
        watch_history: int = 1000,
        password: str = "",
        username: str = "",
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
    ) -> None:
        import redis.asyncio  # noqa: F401 -- fail here, not at first use, when redis is missing

        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"gcs_store_options.url: bad value {_redact(url)!r} for gcs_store 'redis'; "
                "expected redis://host:port/db, rediss://... or unix://path"
            )
        self.url = url
        self._client_options: dict[str, Any] = {"username": username} if username else {}
        if password:
            self._client_options["password"] = password  # a password in the URL wins
        self._client_options.update(_tls_options(scheme, ca_file, cert_file, key_file))
        self.namespace = check_name("namespace", namespace)
        self.connect_timeout = float(connect_timeout)
        self.request_timeout = float(request_timeout)
        self.retry_timeout = float(retry_timeout)
        self.watch_history = int(watch_history)
        self._closed = False
        self._redis: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<RedisGcsStore {_redact(self.url)} namespace={self.namespace!r}>"

    # -- connection and retry ------------------------------------------------
    def _client(self) -> Any:
        """The client for the running event loop (a new one if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._redis is None or self._loop is not loop:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # A client made in another (finished) loop cannot be awaited here; drop it.
            self._redis = redis.asyncio.from_url(
                self.url,
                socket_timeout=self.request_timeout,
                socket_connect_timeout=self.connect_timeout,
                retry=Retry(NoBackoff(), 0),  # we retry ourselves, with a deadline
                client_name=f"microray-gcs-{self.namespace}",
                **self._client_options,
            )
            self._loop = loop
            self._scripts = {
                name: self._redis.register_script(src)
                for name, src in (("put", _PUT), ("delete", _DELETE), ("cas", _CAS), ("schema", _SCHEMA))
            }
        return self._redis

    def _retryable(self) -> tuple[type[BaseException], ...]:
        from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError

        return (ConnectionError, TimeoutError, ReadOnlyError, OSError, asyncio.TimeoutError)

    def _closed_error(self) -> GcsUnavailableError:
        return GcsUnavailableError(f"redis GCS store {_redact(self.url)} is closed")

    async def _run(self, what: str, call: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``call(client)``, retrying connection failures until ``retry_timeout``."""
        if self._closed:
            raise self._closed_error()
        retryable = self._retryable()
        backoff = self._backoff()
        while True:
            try:
                return await call(self._client())
            except retryable as exc:
                if self._closed:
                    raise self._closed_error() from exc
                await backoff.pause(what, _describe(exc))

    def _backoff(self) -> Backoff:
        return Backoff(self.retry_timeout, "redis", f"redis GCS store at {_redact(self.url)}")

    def _keys(self, table: str) -> list[str]:
        base = f"{self.namespace}:{check_name('table', table)}"
        return [base, f"{base}:events", f"{base}:seq"]

    # -- GcsStore --------------------------------------------------------------
    async def ping(self) -> None:
        """Check that Redis answers; ``GcsUnavailableError`` (with the URL) if not."""
        await self._run("ping", lambda c: c.ping())

    async def check_schema(self, version: int) -> None:
        """Record ``version`` on first use; raise ``ConfigError`` if another is stored."""
        key = f"{self.namespace}:!schema"
        stored = await self._run(
            "check_schema", lambda c: self._scripts["schema"](keys=[key], args=[int(version)])
        )
        stored_version = int(stored)
        if stored_version != int(version):
            raise ConfigError(
                schema_mismatch(
                    f"redis GCS store {_redact(self.url)} namespace {self.namespace!r}", stored_version, version
                )
            )

    async def put(self, table: str, key: bytes, value: bytes, overwrite: bool = True) -> bool:
        keys = self._keys(table)
        args = [self.watch_history, as_bytes(key, "key"), as_bytes(value, "value"), "1" if overwrite else "0"]
        added = await self._run("put", lambda c: self._scripts["put"](keys=keys, args=args))
        return bool(added)

    async def get(self, table: str, key: bytes) -> bytes | None:
        name = self._keys(table)[0]
        key = as_bytes(key, "key")
        return await self._run("get", lambda c: c.hget(name, key))

    async def multi_get(self, table: str, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        name = self._keys(table)[0]
        wanted = [as_bytes(k, "key") for k in keys]
        if not wanted:
            return {}
        values = await self._run("multi_get", lambda c: c.hmget(name, wanted))
        return {k: v for k, v in zip(wanted, values) if v is not None}

    async def get_all(self, table: str, prefix: bytes = b"") -> dict[bytes, bytes]:
        name = self._keys(table)[0]
        prefix = as_bytes(prefix, "prefix")

        async def scan(c: Any) -> dict[bytes, bytes]:
            if not prefix:
                return await c.hgetall(name)  # one atomic snapshot
            found: dict[bytes, bytes] = {}
            cursor = 0
            match = _glob_escape(prefix) + b"*"
            while True:
                cursor, chunk = await c.hscan(name, cursor, match=match, count=1000)
                found.update(chunk)
                if cursor == 0:
                    return found

        found = await self._run("get_all", scan)
        return {k: found[k] for k in sorted(found) if k.startswith(prefix)}

    async def delete(self, table: str, key: bytes) -> bool:
        return await self.batch_delete(table, [key]) == 1

    async def batch_delete(self, table: str, keys: Sequence[bytes]) -> int:
        names = self._keys(table)
        args: list[Any] = [self.watch_history, *(as_bytes(k, "key") for k in keys)]
        if len(args) == 1:
            return 0
        return int(await self._run("delete", lambda c: self._scripts["delete"](keys=names, args=args)))

    async def exists(self, table: str, key: bytes) -> bool:
        name = self._keys(table)[0]
        key = as_bytes(key, "key")
        return bool(await self._run("exists", lambda c: c.hexists(name, key)))

    async def compare_and_set(
        self, table: str, key: bytes, expected: bytes | None, value: bytes
    ) -> bool:
        names = self._keys(table)
        args = [
            self.watch_history,
            as_bytes(key, "key"),
            as_bytes(value, "value"),
            "0" if expected is None else "1",
            b"" if expected is None else as_bytes(expected, "expected value"),
        ]
        return bool(await self._run("compare_and_set", lambda c: self._scripts["cas"](keys=names, args=args)))

    def watch(self, table: str, prefix: bytes = b"") -> AsyncIterator[WatchEvent]:
        """Changes to ``table`` under ``prefix``, in order, from when iteration starts.

        Survives reconnects and server restarts (resumes after the last event
        delivered). Raises ``GcsUnavailableError`` when Redis stays unreachable
        for ``retry_timeout`` or when events were trimmed away while it was
        disconnected (more than ``watch_history`` changes)."""
        stream = self._keys(table)[1]
        prefix = as_bytes(prefix, "prefix")
        if self._closed:
            raise self._closed_error()
        return self._watch(table, stream, prefix)

    async def _watch(self, table: str, stream: str, prefix: bytes) -> AsyncIterator[WatchEvent]:
        last_id: bytes | None = None
        last_seq: int | None = None
        retryable = self._retryable()
        backoff = self._backoff()
        while not self._closed:
            try:
                client = self._client()
                if last_id is None:
                    newest = await client.xrevrange(stream, count=1)
                    if newest:
                        last_id, fields = newest[0]
                        last_seq = int(fields[b"s"])
                    else:
                        last_id = b"0-0"
                reply = await client.xread({stream: last_id}, count=_WATCH_BATCH, block=_WATCH_BLOCK_MS)
            except retryable as exc:
                if self._closed:
                    return
                await backoff.pause(f"watch of table {table!r}", _describe(exc))
                continue
            backoff.reset()
            for _name, entries in reply or ():
                for entry_id, fields in entries:
                    seq = int(fields[b"s"])
                    if last_seq is not None and seq > last_seq + 1:
                        raise GcsUnavailableError(
                            f"redis GCS store at {_redact(self.url)}: watch of table {table!r} "
                            f"lost {seq - last_seq - 1} events (stream history of "
                            f"{self.watch_history} was trimmed while disconnected); re-read the "
                            "table and watch again"
                        )
                    last_id, last_seq = entry_id, seq
                    key = fields[b"k"]
                    if not key.startswith(prefix):
                        continue
                    if fields[b"o"] == b"d":
                        yield WatchEvent("delete", table, key, None)
                    else:
                        yield WatchEvent("put", table, key, fields[b"v"])

    async def close(self) -> None:
        """Close the connections; running watches end. Calling it twice is harmless."""
        if self._closed:
            return
        self._closed = True
        client, loop = self._redis, self._loop
        self._redis = None
        if client is None:
            return
        await close_in_loop(loop, client.aclose, "redis")


@hookimpl
def microray_gcs_stores() -> list[GcsStoreRegistration]:
    """Register the ``redis`` GCS store."""
    return [
        GcsStoreRegistration(
            name="redis",
            factory=RedisGcsStore,
            description="Redis hashes + streams; durable (with AOF/RDB), survives a head restart.",
            capabilities=frozenset({"persistence", "watch"}),
            options={
                "url": OptionSpec(
                    str, "redis://[:password@]host:port/db, rediss://... or unix://path",
                    default="redis://127.0.0.1:6379/0",
                ),
                "namespace": OptionSpec(
                    str, "Cluster id; prefixes every key so clusters can share one Redis",
                    default="default",
                ),
                **timeout_options(),
                "watch_history": OptionSpec(
                    int, "Changes kept per table for watchers that reconnect", default=1000, parse=int
                ),
                "password": OptionSpec(
                    str, "Password of the Redis server (AUTH), used when the URL has none", default="",
                    secret=True,
                ),
                "username": OptionSpec(str, "Redis ACL user (AUTH user password); 'default' if empty", default=""),
                "ca_file": OptionSpec(str, "PEM file of the CA that signed the server's certificate (rediss://)", default=""),
                "cert_file": OptionSpec(str, "PEM client certificate, for Redis --tls-auth-clients yes", default=""),
                "key_file": OptionSpec(str, "PEM private key of cert_file", default=""),
            },
        )
    ]
