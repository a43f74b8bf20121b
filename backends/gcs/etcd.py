"""``etcd``: a durable GCS store in etcd v3.

Client: the etcd v3 gRPC API, through the generated stubs that ship with
``etcd-sdk-python`` (module ``pyetcd``), called on a ``grpc.aio`` channel.
pyetcd's own client is synchronous (a thread per call with ``to_thread``), its
watcher runs on a private thread that reports errors only to callbacks, and it
marks an endpoint "failed" for 300 s after one error; using its protos on an
asyncio channel gives native async calls with real deadlines and
cancellation, and a watch stream we can resume ourselves.

Layout: key ``/<namespace>/<table>/<key>`` (etcd keys are bytes, so binary
keys work); the schema version lives in ``/<namespace>/!schema`` (``!`` is not
allowed in table names). ``get_all`` is a paginated range read pinned to one
revision, ascending by key; ``compare_and_set`` is one transaction (compare
create-revision == 0 for "absent", the value for small expected values, or
the mod-revision read just before for large ones); ``watch`` is an etcd watch
that, after a lost connection or a server restart, is re-created with
``start_revision`` = one past the last event delivered, so nothing is lost
(unless etcd compacted that history: then ``GcsUnavailableError``).

Members, TLS and auth (``microray.backends.gcs.etcd_conn``): ``url`` or
``endpoints`` may name several members; a call that cannot reach the member
in use moves on to the next one, and so does a watch, resuming from its
revision (revisions are cluster-wide); a conditional write whose retry finds
the key already holding its value reports success (an earlier try was
applied before its member died). ``https://`` members use TLS
(``ca_file``, optional client ``cert_file``/``key_file``); ``user`` and
``password`` use etcd's auth (a token sent with every call, renewed when etcd
refuses it).

Large values: etcd's default ``--max-request-bytes`` is 1.5 MiB, so run etcd
with a larger one (see docs/gcs-stores.md). etcd before 3.5.5 also cannot
replay a WAL entry over 10 MiB on restart (etcd-io/etcd#14114), so this client
refuses write requests over ``max_request_bytes`` (default just under 10 MiB)
with ``EtcdRequestTooLargeError`` instead of letting them brick the member.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog

from microray.exceptions import ConfigError, GcsUnavailableError
from microray.gcs.store_support import Backoff, as_bytes, check_name, close_in_loop, schema_mismatch, timeout_options
from microray.hookspecs import hookimpl
from microray.interfaces.gcs_store import WatchEvent
from microray.registrations import GcsStoreRegistration, OptionSpec

from .etcd_conn import DEFAULT_URL, EtcdConnection, MemberRpc, parse_members, url_list

log = structlog.get_logger(__name__)

__all__ = ["EtcdGcsStore", "EtcdRequestTooLargeError", "microray_gcs_stores"]

T = TypeVar("T")

_TXN_OPS = 128  # etcd's default --max-txn-ops
_SMALL_COMPARE = 64 * 1024  # expected values above this are compared by mod revision
_PAGE = 512  # keys per range page in get_all (halved when a page is too large)

#: Largest write request sent by default: under etcd < 3.5.5's 10 MiB WAL entry limit.
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024 - 64 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class EtcdRequestTooLargeError(ValueError):
    """A request is larger than this client or the etcd server accepts."""


def _range_end(prefix: bytes) -> bytes:
    """The etcd ``range_end`` covering every key that starts with ``prefix``."""
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return b"\x00"  # every key >= prefix
    end[-1] += 1
    return bytes(end)


def _retryable(code: Any, details: str) -> bool:
    """Whether a call that failed with gRPC status ``code`` may work on another try (or member):
    the member is unreachable, hangs, has no leader, or reset the stream as it shut down."""
    import grpc

    return (
        code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        or (code == grpc.StatusCode.INTERNAL and ("Stream removed" in details or "RST_STREAM" in details))
        # a member without a leader drops proposals (etcd passes raft's error on as UNKNOWN)
        or (code == grpc.StatusCode.UNKNOWN and "proposal dropped" in details)
    )


def _token_refused(code: Any, details: str) -> bool:
    """Whether etcd refused the auth token (expired, or the auth store changed since)."""
    import grpc

    return code == grpc.StatusCode.UNAUTHENTICATED or (
        code == grpc.StatusCode.INVALID_ARGUMENT and "auth store is old" in details
    )


def _dedupe(keys: Sequence[bytes]) -> list[bytes]:
    return list(dict.fromkeys(as_bytes(k, "key") for k in keys))


class EtcdGcsStore:
    """A ``GcsStore`` backed by an etcd v3 cluster. See the module docstring."""

    def __init__(
        self,
        url: str | list[str] | None = None,
        namespace: str = "default",
        connect_timeout: float = 3.0,
        request_timeout: float = 10.0,
        retry_timeout: float = 5.0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        endpoints: str | list[str] | tuple[str, ...] = (),
        user: str = "",
        password: str = "",
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
    ) -> None:
        import grpc  # noqa: F401 -- fail here, not at first use, when a dependency is missing
        from pyetcd import etcdrpc

        try:
            members = parse_members(url, endpoints)
        except ValueError as exc:
            raise ConfigError(f"gcs_store_options.url/endpoints for gcs_store 'etcd': {exc}") from None
        #: The members, comma-separated: how errors and ``repr`` name this store.
        self.url = ",".join(m.url for m in members)
        self.namespace = check_name("namespace", namespace)
        self.connect_timeout = float(connect_timeout)
        self.request_timeout = float(request_timeout)
        self.retry_timeout = float(retry_timeout)
        self.max_request_bytes = int(max_request_bytes)
        self.max_message_bytes = int(max_message_bytes)
        #: Deadline of each try after a failure (the first try has request_timeout).
        self._retry_try_timeout = min(self.request_timeout, max(1.0, self.retry_timeout / 3))
        self._pb = etcdrpc
        self._closed = False
        self._watch_calls: set[Any] = set()
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            # reconnect quickly after a restart; bound each connection attempt
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.min_reconnect_backoff_ms", int(self.connect_timeout * 1000)),
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.enable_retries", 0),  # we retry ourselves, with a deadline
        ]
        self._conn = EtcdConnection(
            members, options=options, request_timeout=self.request_timeout, ca_file=ca_file,
            cert_file=cert_file, key_file=key_file, user=user, password=password,
        )  # fmt: skip

    def __repr__(self) -> str:
        user = f" user={self._conn.user!r}" if self._conn.user else ""
        return f"<EtcdGcsStore {self.url} namespace={self.namespace!r}{user}>"

    @property
    def current_member(self) -> str:
        """URL of the etcd member calls go to now (it changes when that member fails)."""
        return self._conn.current.url

    # -- connection and retry ------------------------------------------------
    def _closed_error(self) -> GcsUnavailableError:
        return GcsUnavailableError(f"etcd GCS store {self.url} is closed")

    def _too_large(self, what: str, size: int) -> EtcdRequestTooLargeError:
        return EtcdRequestTooLargeError(
            f"etcd GCS store: {what} request of {size} bytes exceeds max_request_bytes="
            f"{self.max_request_bytes}. etcd < 3.5.5 cannot restart with WAL entries over "
            "10 MiB; with etcd >= 3.5.5 raise gcs_store_options.max_request_bytes together "
            "with etcd's --max-request-bytes (see docs/gcs-stores.md)"
        )

    def _check_size(self, what: str, request: Any) -> None:
        size = request.ByteSize()
        if size > self.max_request_bytes:
            raise self._too_large(what, size)

    async def _run(
        self, what: str, call: Callable[[MemberRpc], Awaitable[T]], retried: list[bool] | None = None
    ) -> T:
        """Run ``call(rpc)`` on the member in use; when it cannot be reached, move on to the
        next member and retry (with backoff) until ``retry_timeout``. ``retried`` (a one-item
        list) is set True when a try failed after it may have been applied."""
        import grpc

        if self._closed:
            raise self._closed_error()
        backoff = self._backoff()
        timeout = self.request_timeout
        while True:
            rpc = self._conn.rpc().with_timeout(timeout)
            token = self._conn.token
            try:
                await self._conn.ensure_token(rpc)
                return await call(rpc)
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED or (
                    code == grpc.StatusCode.INVALID_ARGUMENT and "too large" in details
                ):
                    raise EtcdRequestTooLargeError(
                        f"etcd GCS store at {self.url}: {what} was refused as too large "
                        f"({code.name}: {details}); start etcd with a larger "
                        "--max-request-bytes (see docs/gcs-stores.md)"
                    ) from exc
                if _token_refused(code, details) and self._conn.token:
                    self._conn.drop_token(self._conn.token or token)
                    await backoff.pause(what, f"{rpc.member.url}: {code.name}: {details}")
                    continue
                if not _retryable(code, details):
                    raise GcsUnavailableError(
                        f"etcd GCS store at {self.url}: {what} failed on {rpc.member.url}: "
                        f"{code.name}: {details}"
                    ) from exc
                if self._closed:
                    raise self._closed_error() from exc
                error = f"{rpc.member.url}: {code.name}: {details}"
                if retried is not None:
                    retried[0] = True
                self._conn.failed(rpc, error)
                await backoff.pause(what, error)
                # A member whose leader just died holds a forwarded write for etcd's own request
                # timeout (7 s by default) before it gives up; shorter tries move on sooner.
                timeout = self._retry_try_timeout
            except asyncio.CancelledError:
                # close() cancels the calls on its channel; report that, not a cancellation
                task = asyncio.current_task()
                if self._closed and task is not None and not task.cancelling():
                    raise self._closed_error() from None
                raise

    def _backoff(self) -> Backoff:
        return Backoff(self.retry_timeout, "etcd", f"etcd GCS store at {self.url}")

    def _key(self, table: str, key: bytes) -> bytes:
        return self._base(table) + as_bytes(key, "key")

    def _base(self, table: str) -> bytes:
        return f"/{self.namespace}/{check_name('table', table)}/".encode()

    def _compare(self, key: bytes, target: str, **value: Any) -> Any:
        pb = self._pb
        return pb.Compare(
            key=key, result=pb.Compare.EQUAL, target=getattr(pb.Compare, target), **value
        )

    # -- GcsStore --------------------------------------------------------------
    async def ping(self) -> None:
        """Check that etcd answers a linearizable read; ``GcsUnavailableError`` (with the URL) if not."""
        req = self._pb.RangeRequest(key=f"/{self.namespace}/!schema".encode(), count_only=True)
        await self._run("ping", lambda r: r.kv.Range(req, **r.kw))

    async def check_schema(self, version: int) -> None:
        """Record ``version`` on first use; raise ``ConfigError`` if another is stored."""
        pb = self._pb
        key = f"/{self.namespace}/!schema".encode()
        req = pb.TxnRequest(
            compare=[self._compare(key, "CREATE", create_revision=0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=str(int(version)).encode()))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
        )
        resp = await self._run("check_schema", lambda r: r.kv.Txn(req, **r.kw))
        if resp.succeeded:
            return
        stored = int(resp.responses[0].response_range.kvs[0].value)
        if stored != int(version):
            raise ConfigError(
                schema_mismatch(f"etcd GCS store {self.url} namespace {self.namespace!r}", stored, version)
            )

    async def put(self, table: str, key: bytes, value: bytes, overwrite: bool = True) -> bool:
        pb = self._pb
        full = self._key(table, key)
        put = pb.RequestOp(request_put=pb.PutRequest(key=full, value=as_bytes(value, "value")))
        if overwrite:
            # One txn, the value sent once: the count is read before the put applies.
            count = pb.RequestOp(request_range=pb.RangeRequest(key=full, count_only=True))
            req = pb.TxnRequest(success=[count, put])
        else:
            req = pb.TxnRequest(compare=[self._compare(full, "CREATE", create_revision=0)], success=[put])
        self._check_size("put", req)
        retried = [False]
        resp = await self._run("put", lambda r: r.kv.Txn(req, **r.kw), retried)
        if overwrite:
            return resp.responses[0].response_range.count == 0
        return bool(resp.succeeded) or (retried[0] and await self._applied_before(full, value))

    async def _applied_before(self, full: bytes, value: bytes) -> bool:
        """After a conditional write failed its condition on a retry: whether the key holds
        ``value``, i.e. an earlier try of the same write was applied before its member died."""
        current = await self._run("compare_and_set", lambda r: r.kv.Range(self._pb.RangeRequest(key=full), **r.kw))
        applied = bool(current.kvs) and current.kvs[0].value == value
        if applied:
            log.debug("etcd_write_applied_by_earlier_try", key=full)
        return applied

    async def get(self, table: str, key: bytes) -> bytes | None:
        req = self._pb.RangeRequest(key=self._key(table, key))
        resp = await self._run("get", lambda r: r.kv.Range(req, **r.kw))
        return resp.kvs[0].value if resp.kvs else None

    async def multi_get(self, table: str, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        pb = self._pb
        base = self._base(table)
        wanted = _dedupe(keys)
        found: dict[bytes, bytes] = {}
        for i in range(0, len(wanted), _TXN_OPS):
            chunk = wanted[i : i + _TXN_OPS]
            req = pb.TxnRequest(
                success=[pb.RequestOp(request_range=pb.RangeRequest(key=base + k)) for k in chunk]
            )
            resp = await self._run("multi_get", lambda r: r.kv.Txn(req, **r.kw))
            for key, op in zip(chunk, resp.responses):
                if op.response_range.kvs:
                    found[key] = op.response_range.kvs[0].value
        return found

    async def get_all(self, table: str, prefix: bytes = b"") -> dict[bytes, bytes]:
        pb = self._pb
        base = self._base(table)
        start = base + as_bytes(prefix, "prefix")
        end = _range_end(start)
        found: dict[bytes, bytes] = {}
        revision = 0  # pinned to the first page's revision: one consistent snapshot
        limit = _PAGE
        while True:
            req = pb.RangeRequest(
                key=start, range_end=end, limit=limit, revision=revision,
                sort_order=pb.RangeRequest.ASCEND, sort_target=pb.RangeRequest.KEY,
            )  # fmt: skip
            try:
                resp = await self._run("get_all", lambda r: r.kv.Range(req, **r.kw))
            except EtcdRequestTooLargeError:
                if limit == 1:
                    raise
                limit = max(1, limit // 2)  # a page of large values: ask for fewer
                continue
            revision = revision or resp.header.revision
            for kv in resp.kvs:
                found[kv.key[len(base) :]] = kv.value
            if not resp.more or not resp.kvs:
                return found
            start = resp.kvs[-1].key + b"\x00"

    async def delete(self, table: str, key: bytes) -> bool:
        req = self._pb.DeleteRangeRequest(key=self._key(table, key))
        resp = await self._run("delete", lambda r: r.kv.DeleteRange(req, **r.kw))
        return resp.deleted > 0

    async def batch_delete(self, table: str, keys: Sequence[bytes]) -> int:
        pb = self._pb
        base = self._base(table)
        wanted = _dedupe(keys)  # etcd refuses a txn naming one key twice
        deleted = 0
        for i in range(0, len(wanted), _TXN_OPS):
            req = pb.TxnRequest(
                success=[
                    pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=base + k))
                    for k in wanted[i : i + _TXN_OPS]
                ]
            )
            resp = await self._run("batch_delete", lambda r: r.kv.Txn(req, **r.kw))
            deleted += sum(op.response_delete_range.deleted for op in resp.responses)
        return deleted

    async def exists(self, table: str, key: bytes) -> bool:
        req = self._pb.RangeRequest(key=self._key(table, key), count_only=True)
        resp = await self._run("exists", lambda r: r.kv.Range(req, **r.kw))
        return resp.count > 0

    async def compare_and_set(
        self, table: str, key: bytes, expected: bytes | None, value: bytes
    ) -> bool:
        pb = self._pb
        full = self._key(table, key)
        value = as_bytes(value, "value")
        if expected is None:
            compare = self._compare(full, "CREATE", create_revision=0)
        else:
            expected = as_bytes(expected, "expected value")
            if len(expected) <= _SMALL_COMPARE:
                compare = self._compare(full, "VALUE", value=expected)
            else:
                # Don't ship a large expected value back: compare the revision we read.
                current = await self._run(
                    "compare_and_set", lambda r: r.kv.Range(pb.RangeRequest(key=full), **r.kw)
                )
                if not current.kvs or current.kvs[0].value != expected:
                    return False
                compare = self._compare(full, "MOD", mod_revision=current.kvs[0].mod_revision)
        req = pb.TxnRequest(
            compare=[compare], success=[pb.RequestOp(request_put=pb.PutRequest(key=full, value=value))]
        )
        self._check_size("compare_and_set", req)
        retried = [False]
        resp = await self._run("compare_and_set", lambda r: r.kv.Txn(req, **r.kw), retried)
        return bool(resp.succeeded) or (retried[0] and await self._applied_before(full, value))

    def watch(self, table: str, prefix: bytes = b"") -> AsyncIterator[WatchEvent]:
        """Changes to ``table`` under ``prefix``, in order, from when iteration starts.

        Survives reconnects and etcd restarts (resumes after the last event
        delivered). Raises ``GcsUnavailableError`` when etcd stays unreachable
        for ``retry_timeout`` or compacted the history the watch needs."""
        start = self._base(table) + as_bytes(prefix, "prefix")
        if self._closed:
            raise self._closed_error()
        return self._watch(table, start)

    async def _watch(self, table: str, start: bytes) -> AsyncIterator[WatchEvent]:
        import grpc

        pb = self._pb
        base = self._base(table)
        end = _range_end(start)
        next_revision: int | None = None
        backoff = self._backoff()
        while not self._closed:
            call = None
            error: str | None = None
            rpc = self._conn.rpc()
            try:
                await self._conn.ensure_token(rpc)
                if next_revision is None:
                    head = await rpc.kv.Range(
                        pb.RangeRequest(key=start, range_end=end, count_only=True), **rpc.kw
                    )
                    next_revision = head.header.revision + 1
                # hasleader: a member cut off from the leader cancels the watch instead of
                # going silent, so the watch moves on to another member.
                call = rpc.watch.Watch(metadata=(*rpc.metadata, ("hasleader", "true")))
                self._watch_calls.add(call)
                await call.write(
                    pb.WatchRequest(
                        create_request=pb.WatchCreateRequest(
                            key=start, range_end=end, start_revision=next_revision
                        )
                    )
                )
                async for resp in call:
                    if resp.compact_revision:
                        raise GcsUnavailableError(
                            f"etcd GCS store at {self.url}: watch of table {table!r} needs "
                            f"revision {next_revision} but etcd compacted up to "
                            f"{resp.compact_revision}; re-read the table and watch again"
                        )
                    if resp.canceled:
                        reason = resp.cancel_reason or "no reason given"
                        if "permission denied" in reason:
                            raise GcsUnavailableError(
                                f"etcd GCS store at {self.url}: watch of table {table!r} refused "
                                f"by {rpc.member.url}: {reason}; expected user "
                                f"{self._conn.user!r} to have read permission on /{self.namespace}/"
                            )
                        if "auth" in reason:
                            self._conn.drop_token(self._conn.token)
                        error = f"{rpc.member.url}: watch canceled by etcd: {reason}"
                        break
                    if resp.created:
                        backoff.reset()
                    for ev in resp.events:
                        next_revision = ev.kv.mod_revision + 1
                        key = ev.kv.key[len(base) :]
                        if ev.type == ev.DELETE:
                            yield WatchEvent("delete", table, key, None)
                        else:
                            yield WatchEvent("put", table, key, ev.kv.value)
                else:
                    error = f"{rpc.member.url}: watch stream ended"
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                error = f"{rpc.member.url}: {code.name}: {details}"
                if _token_refused(code, details) and self._conn.token:
                    self._conn.drop_token(self._conn.token)
                elif not _retryable(code, details):
                    raise GcsUnavailableError(
                        f"etcd GCS store at {self.url}: watch of table {table!r} failed on {error}"
                    ) from exc
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed and task is not None and not task.cancelling():
                    return  # close() cancelled the stream: the watch ends
                raise
            finally:
                if call is not None:
                    call.cancel()
                    self._watch_calls.discard(call)
            if self._closed:
                return
            self._conn.failed(rpc, str(error))
            await backoff.pause(f"watch of table {table!r}", str(error))

    async def close(self) -> None:
        """Close the channel; running watches end. Calling it twice is harmless."""
        if self._closed:
            return
        self._closed = True
        for call in list(self._watch_calls):
            call.cancel()
        await self._conn.close(close_in_loop)


@hookimpl
def microray_gcs_stores() -> list[GcsStoreRegistration]:
    """Register the ``etcd`` GCS store."""
    return [
        GcsStoreRegistration(
            name="etcd",
            factory=EtcdGcsStore,
            description="etcd v3 (gRPC, asyncio); durable and replicated, survives a head restart.",
            capabilities=frozenset({"persistence", "watch"}),
            options={
                "url": OptionSpec(
                    list, "http(s)://host:port of an etcd member, or several (a list or comma-separated); "
                    f"{DEFAULT_URL} when neither url nor endpoints is given",
                    default=None, parse=url_list,
                ),
                "endpoints": OptionSpec(
                    list, "The etcd members (a list or comma-separated URLs); instead of url",
                    default=(), parse=url_list,
                ),
                "namespace": OptionSpec(
                    str, "Cluster id; prefixes every key so clusters can share one etcd",
                    default="default",
                ),
                **timeout_options(),
                "max_request_bytes": OptionSpec(
                    int, "Largest write request sent (keep under etcd's --max-request-bytes)",
                    default=DEFAULT_MAX_REQUEST_BYTES, parse=int,
                ),
                "max_message_bytes": OptionSpec(
                    int, "gRPC message size limit of the client", default=DEFAULT_MAX_MESSAGE_BYTES, parse=int
                ),
                "user": OptionSpec(str, "etcd user to authenticate as (etcd auth enabled)", default=""),
                "password": OptionSpec(str, "Password of the etcd user", default="", secret=True),
                "ca_file": OptionSpec(
                    str, "PEM file of the CA that signed the members' certificates (https:// URLs)", default=""
                ),
                "cert_file": OptionSpec(str, "PEM client certificate, for etcd --client-cert-auth", default=""),
                "key_file": OptionSpec(str, "PEM private key of cert_file", default=""),
            },
        )
    ]
