"""gRPC plumbing shared by every process: server and channel options, channel reuse,
the event loop the gRPC services run on, and the cluster token and TLS that every
server demands and every channel shows (``make_server``, ``channel``)."""

from __future__ import annotations

import asyncio
import functools
import hmac
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import structlog

log = structlog.get_logger(__name__)

IO_LOOPS = ("auto", "uvloop", "asyncio")


def uvloop_wanted(kind: str) -> bool:
    """Whether ``io_loop = kind`` means uvloop here ("auto": when it is installed)."""
    if kind == "asyncio":
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if kind == "uvloop":
            raise RuntimeError("io_loop = \"uvloop\" but uvloop is not installed (pip install uvloop)") from None
        return False
    return True


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A new event loop for microray's own I/O (gRPC services and clients): uvloop's when
    ``kind`` allows it -- every task and actor call crosses several loop iterations on
    each side, and uvloop's are cheaper (measured: +18% 1:1 sync actor calls) -- else
    asyncio's. User code (async actors) gets a plain asyncio loop, never this one."""
    if uvloop_wanted(kind):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(coro: Coroutine[Any, Any, Any], kind: str = "auto") -> Any:
    """``asyncio.run(coro)`` on a loop from ``new_event_loop(kind)`` (node daemons)."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(kind)) as runner:
        return runner.run(coro)

MAX_MESSAGE = 512 * 1024 * 1024
KEEPALIVE_TIME_MS = 5_000      # a connection with calls open is pinged this often
KEEPALIVE_TIMEOUT_MS = 10_000  # and closed, failing its calls, when a ping is unanswered this long

OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.so_reuseport", 0),
    # a restarted GCS (or any peer) is found again within about a second
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # A peer whose machine vanished (killed, unplugged, its network gone) answers nothing:
    # no RST, no refusal, and TCP alone would hold a call to it for many minutes. While a
    # call is open on a connection, each side pings the other every KEEPALIVE_TIME_MS and
    # closes the connection (failing its calls with UNAVAILABLE) when a ping goes
    # unanswered for KEEPALIVE_TIMEOUT_MS; idle connections are not pinged. Pings are
    # answered by gRPC's own threads, so a busy Python process still answers them.
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),  # a long call that sends nothing is still pinged
    # ... and the servers accept those pings (by default they refuse pings more often
    # than every 5 minutes and close the connection after two)
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
    ("grpc.http2.max_ping_strikes", 0),
]


# -- the cluster token and TLS: every server checks them, every channel shows them ----------------
TOKEN_KEY = "microray-token"  # the call metadata that carries the cluster token
TOKEN_ENV = "MICRORAY_TOKEN"  # how a token reaches a process that has no session folder of it


@dataclass(frozen=True)
class Credentials:
    """What a process shows on each gRPC call it makes and demands of each call it
    serves: the cluster token, and the ``tls`` config table (``cert_file``,
    ``key_file``, ``ca_file``, ``require_client_cert``, ``server_name``; empty:
    plaintext). Never printed whole: ``repr`` hides the token."""

    token: str = field(repr=False)
    tls: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or not self.token:
            raise ValueError("a cluster token is required (a non-empty string)")

    @functools.cached_property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata every call carries: built once, shared by every call."""
        return ((TOKEN_KEY, self.token),)

    @functools.cached_property
    def _tls_files(self) -> tuple[bytes, bytes, bytes | None]:
        def read(key: str) -> bytes:
            path = self.tls[key]
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as exc:
                raise OSError(f"tls.{key} {path}: cannot read it: {exc.strerror or exc}") from None

        ca = read("ca_file") if self.tls.get("ca_file") else None
        return read("cert_file"), read("key_file"), ca

    def server_credentials(self) -> grpc.ServerCredentials:
        cert, key, ca = self._tls_files
        require = bool(self.tls.get("require_client_cert"))
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=require)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        cert, key, ca = self._tls_files
        if self.tls.get("require_client_cert"):
            return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        return grpc.ssl_channel_credentials(root_certificates=ca)

    def channel_options(self) -> list[tuple[str, Any]]:
        name = self.tls.get("server_name") if self.tls else None
        return [*OPTIONS, ("grpc.ssl_target_name_override", name)] if name else OPTIONS


MISSING_TOKEN = (
    "this microray service requires the cluster token and the call carried none; "
    "give it with --token or MICRORAY_TOKEN (`microray token` on the head prints it)"
)
WRONG_TOKEN = (
    "the call carried a wrong cluster token for this microray service; "
    "use the token of this cluster (`microray token` on the head prints it)"
)


def _refusal(kind: str, message: str) -> grpc.RpcMethodHandler:
    """A handler of ``kind`` that refuses the call with UNAUTHENTICATED. It never looks
    at the request: without a deserializer the request stays raw bytes."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover -- makes this an async generator

    make = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }[kind]
    return make(refuse_stream if kind.endswith("_stream") else refuse)


def _kind(handler: grpc.RpcMethodHandler) -> str:
    return f"{'stream' if handler.request_streaming else 'unary'}_{'stream' if handler.response_streaming else 'unary'}"


class TokenCheck:
    """Refuse, with UNAUTHENTICATED, every call that does not carry the cluster token,
    before its handler runs (so before any request field is deserialized). Tokens are
    compared in constant time; the refusal never echoes what the call carried.

    It sits between the server and its services' handlers (``wrap``), where gRPC looks
    a call's handler up: a plain function call per call, where a server interceptor
    would cost every call a coroutine (and some 10 us of CPU)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._refusals: dict[tuple[str, str], grpc.RpcMethodHandler] = {}

    def wrap(self, inner: grpc.GenericRpcHandler) -> grpc.GenericRpcHandler:
        """``inner``'s handlers, for the calls that carry the token only."""
        return _Checked(self, inner)

    def handler(self, handler: grpc.RpcMethodHandler | None,
                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """``handler`` when the call carries the token, else one that refuses it (None,
        for an unknown method, stays None: gRPC answers UNIMPLEMENTED)."""
        if handler is None:
            return None
        given = None
        for key, value in details.invocation_metadata or ():
            if key == TOKEN_KEY:
                given = value
                break
        if given is not None and hmac.compare_digest(
            given.encode() if isinstance(given, str) else given, self._token
        ):
            return handler
        message = MISSING_TOKEN if given is None else WRONG_TOKEN
        key = (_kind(handler), message)
        refusal = self._refusals.get(key)
        if refusal is None:
            refusal = self._refusals[key] = _refusal(*key)
        return refusal


class _Checked(grpc.GenericRpcHandler):
    __slots__ = ("_check", "_inner")

    def __init__(self, check: TokenCheck, inner: grpc.GenericRpcHandler) -> None:
        self._check = check
        self._inner = inner

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._check.handler(self._inner.service(handler_call_details), handler_call_details)


def make_server(credentials: Credentials) -> grpc.aio.Server:
    """A gRPC server whose every method demands ``credentials.token`` (``TokenCheck``);
    ``bind`` then listens with TLS when ``credentials.tls`` is set. This is the only way
    microray makes a server.

    Every service added to it goes through the check: generic handlers are wrapped, and
    pre-registered method handlers (which gRPC would look up before, and without, any
    generic handler) are served as a checked generic handler instead."""
    server = grpc.aio.server(options=OPTIONS)
    check = TokenCheck(credentials.token)
    add_generic = server.add_generic_rpc_handlers

    def add_generic_rpc_handlers(handlers: Any) -> None:
        add_generic([check.wrap(h) for h in handlers])

    def add_registered_method_handlers(service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        add_generic([check.wrap(grpc.method_handlers_generic_handler(service_name, method_handlers))])

    setattr(server, "add_generic_rpc_handlers", add_generic_rpc_handlers)
    setattr(server, "add_registered_method_handlers", add_registered_method_handlers)
    _server_credentials[server] = credentials
    return server


_server_credentials: "weakref.WeakKeyDictionary[grpc.aio.Server, Credentials]" = weakref.WeakKeyDictionary()


def bind(server: grpc.aio.Server, host: str, port: int) -> int:
    """Bind ``host:port`` (port 0: any free port) and return the port; TLS when the
    server's credentials (``make_server``) have it."""
    credentials = _server_credentials.get(server)
    if credentials is None:
        raise RuntimeError("bind() takes a server made by microray.rpc.make_server (it checks the cluster token)")
    if credentials.tls:
        bound = server.add_secure_port(f"{host}:{port}", credentials.server_credentials())
    else:
        bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind gRPC server to {host}:{port} (port in use?)")
    return bound


class _WithToken:
    """A method of a stub: each call carries the token's metadata (plus any given)."""

    __slots__ = ("_call", "_md")

    def __init__(self, call: Any, md: Any) -> None:
        self._call = call
        self._md = md

    def __call__(self, request: Any = None, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        return self._call(request, *args, metadata=self._md if metadata is None else (*metadata, *self._md), **kwargs)

    def with_call(self, request: Any, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        return self._call.with_call(request, *args, metadata=(*(metadata or ()), *self._md), **kwargs)

    def future(self, request: Any, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        return self._call.future(request, *args, metadata=(*(metadata or ()), *self._md), **kwargs)


class _TokenChannel:
    """A gRPC channel (aio or blocking) whose every call carries the cluster token: its
    stubs' methods are made once per method name and add one static metadata tuple."""

    def __init__(self, channel: Any, credentials: Credentials) -> None:
        self._channel = channel
        # aio calls take a ready Metadata as it is (a tuple is converted on every call)
        self._md = grpc.aio.Metadata(*credentials.metadata) if isinstance(channel, grpc.aio.Channel) else credentials.metadata
        self._methods: dict[tuple[str, str], _WithToken] = {}

    def _method(self, kind: str, method: str, *args: Any, **kwargs: Any) -> _WithToken:
        key = (kind, method)
        wrapped = self._methods.get(key)
        if wrapped is None:
            wrapped = self._methods[key] = _WithToken(getattr(self._channel, kind)(method, *args, **kwargs), self._md)
        return wrapped

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> _WithToken:
        return self._method("unary_unary", method, *args, **kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> _WithToken:
        return self._method("unary_stream", method, *args, **kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> _WithToken:
        return self._method("stream_unary", method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> _WithToken:
        return self._method("stream_stream", method, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # close, channel_ready, get_state, subscribe...
        return getattr(self._channel, name)

    def __enter__(self) -> "_TokenChannel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._channel.close()


def channel(address: str, credentials: Credentials) -> Any:
    """An aio channel to ``address`` that shows ``credentials`` (token on every call,
    TLS when configured). This is the only way microray opens an aio channel."""
    if credentials.tls:
        ch = grpc.aio.secure_channel(address, credentials.channel_credentials(), options=credentials.channel_options())
    else:
        ch = grpc.aio.insecure_channel(address, options=OPTIONS)
    return _TokenChannel(ch, credentials)


def blocking_channel(address: str, credentials: Credentials) -> Any:
    """A blocking (non-aio) channel to ``address`` that shows ``credentials``: for
    tools (the state API, the CLI, the dashboard's threads), never a hot path."""
    if credentials.tls:
        ch = grpc.secure_channel(address, credentials.channel_credentials(), options=credentials.channel_options())
    else:
        ch = grpc.insecure_channel(address, options=OPTIONS)
    return _TokenChannel(ch, credentials)


class ChannelPool:
    """One aio channel per address, for the event loop that created the pool; every
    channel shows ``credentials``."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._channels: dict[str, Any] = {}

    def get(self, address: str) -> Any:
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = channel(address, self.credentials)
        return ch

    def drop(self, address: str) -> None:
        self._channels.pop(address, None)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for ch in channels.values():
            try:
                await ch.close(grace=None)
            except Exception:  # noqa: BLE001 -- closing at shutdown
                pass


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
    )


async def invoke(method: Callable[..., Any], request: Any, timeout: float | None) -> Any:
    """One unary call that rides out a restarting peer: it waits for the channel to be
    ready and retries calls cut off mid-flight, until ``timeout`` has passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.05
    while True:
        left = None if deadline is None else max(0.01, deadline - time.monotonic())
        try:
            return await method(request, timeout=left, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or (deadline is not None and time.monotonic() >= deadline):
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def invoke_logged(method: Callable[..., Any], request: Any, timeout: float | None) -> None:
    """One unary call whose failure is logged (at debug), not raised."""
    try:
        await method(request, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        log.debug("rpc_failed", error=exc.code().name)
