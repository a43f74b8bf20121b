"""How the ``etcd`` GCS store reaches an etcd cluster: its members, TLS and user/password auth.

Members: ``endpoints`` or ``url`` name one member or several (a list, or URLs separated by
commas). The client talks to one member at a time; when a call to it fails with UNAVAILABLE or
DEADLINE_EXCEEDED (the member died, restarted, lost its leader, or hangs) the client moves on to
the next member in the list and the store retries there, so a cluster that keeps a quorum keeps
serving after any one member dies. Every member holds the whole keyspace and revisions are
cluster-wide, so reads, transactions and a watch resumed from a revision mean the same on every
member. Watches are opened with etcd's ``hasleader`` metadata: a member cut off from the
leader cancels them instead of going silent, and the watch moves on too.

TLS: ``https://`` endpoints. ``ca_file`` is the CA that signed the members' certificates (the
system's CAs when omitted); ``cert_file`` + ``key_file`` are the client certificate, for an etcd
run with ``--client-cert-auth``. The files are read when the store is built, so a missing file
is a ``ConfigError`` at start, not an outage later.

Auth: with ``user`` (and ``password``), the store calls etcd's ``Authenticate`` and sends the
token it gets as ``token`` metadata on every call; when etcd says the token is invalid or
expired (simple tokens expire after ``--auth-token-ttl`` of disuse on a member) it
authenticates again and repeats the call. A refused user/password is a ``ConfigError``. The
password is kept in memory only, never shown in logs, errors or ``repr``.
"""

from __future__ import annotations

import asyncio
import copy
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from microray.exceptions import ConfigError

log = structlog.get_logger(__name__)

__all__ = ["DEFAULT_URL", "EtcdConnection", "Member", "parse_members", "url_list"]

DEFAULT_URL = "http://127.0.0.1:2379"


@dataclass(frozen=True)
class Member:
    """One etcd member: its URL as configured and the gRPC target it becomes."""

    url: str
    target: str
    tls: bool


def url_list(value: Any) -> list[str]:
    """``value`` (a URL, URLs separated by commas, or a list of them) as a list of URLs;
    ``ValueError`` for anything else. The ``parse`` of the ``url`` and ``endpoints`` options."""
    if isinstance(value, str):
        items: Sequence[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ValueError(f"expected a URL, URLs separated by commas or a list of URLs, not {type(value).__name__}")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected URL strings, got {item!r}")
        if item.strip():
            out.append(item.strip())
    return out


def parse_members(url: Any, endpoints: Any) -> list[Member]:
    """The members named by the ``url`` and ``endpoints`` options (one of them, or neither for
    the default ``http://127.0.0.1:2379``); ``ConfigError`` naming the bad URL otherwise."""
    urls, given = url_list(url or []), url_list(endpoints or [])
    if urls and given:
        raise ConfigError(
            "gcs_store_options: both 'url' and 'endpoints' are given for gcs_store 'etcd'; "
            "expected one of them (either may list several members)"
        )
    members = []
    for one in urls or given or [DEFAULT_URL]:
        parts = urllib.parse.urlsplit(one)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or (
            parts.username or parts.password
        ):
            raise ConfigError(
                f"gcs_store_options: bad etcd member URL {_no_userinfo(one)!r} for gcs_store 'etcd'; "
                "expected http://host:port or https://host:port (user and password go in the "
                "'user' and 'password' options)"
            )
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        members.append(Member(one, f"{host}:{parts.port or 2379}", parts.scheme == "https"))
    if len({m.tls for m in members}) > 1:
        raise ConfigError(
            "gcs_store_options: etcd members mix http:// and https:// URLs; expected one scheme for all"
        )
    if len({m.target for m in members}) != len(members):
        raise ConfigError("gcs_store_options: an etcd member is listed twice; expected distinct members")
    return members


def _no_userinfo(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
        if "@" in parts.netloc:
            return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
    except ValueError:
        pass
    return url


def _read(option: str, path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"gcs_store_options.{option}: cannot read {path!r} for gcs_store 'etcd': "
            f"{exc.strerror or exc}; expected a readable PEM file"
        ) from None


class MemberRpc:
    """The stubs on one member's channel, bound to one event loop; ``kw`` are the keyword
    arguments of every unary call (deadline and auth token)."""

    def __init__(self, member: Member, index: int, channel: Any, conn: "EtcdConnection") -> None:
        from pyetcd import etcdrpc

        self.member = member
        self.index = index
        self.channel = channel
        self.kv = etcdrpc.KVStub(channel)
        self.watch = etcdrpc.WatchStub(channel)
        self.auth = etcdrpc.AuthStub(channel)
        self._conn = conn
        self.timeout = conn.request_timeout

    def with_timeout(self, timeout: float) -> "MemberRpc":
        """The same stubs, with ``timeout`` as the deadline of each unary call."""
        if timeout == self.timeout:
            return self
        view = copy.copy(self)
        view.timeout = timeout
        return view

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        token = self._conn.token
        return (("token", token),) if token else ()

    @property
    def kw(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "metadata": self.metadata}


@dataclass
class _LoopState:
    loop: asyncio.AbstractEventLoop
    rpcs: dict[int, MemberRpc] = field(default_factory=dict)
    auth_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class EtcdConnection:
    """Channels to the members of one etcd cluster, the member in use, and the auth token.

    ``rpc()`` is the member in use (its channel made for the running loop); ``failed(rpc,
    error)`` after a call to it could not reach it moves on to the next member;
    ``ensure_token(rpc)`` authenticates when a user is configured and no token is held;
    ``drop_token(token)`` forgets a token etcd refused."""

    def __init__(
        self,
        members: list[Member],
        *,
        options: list[tuple[str, Any]],
        request_timeout: float,
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        user: str = "",
        password: str = "",
    ) -> None:
        self.members = members
        self.request_timeout = request_timeout
        self.user = user
        self._password = password
        self._options = options
        self.tls = members[0].tls
        if (ca_file or cert_file or key_file) and not self.tls:
            raise ConfigError(
                "gcs_store_options: ca_file/cert_file/key_file are set for gcs_store 'etcd' but the "
                "member URLs are http://; expected https:// URLs for TLS"
            )
        if bool(cert_file) != bool(key_file):
            raise ConfigError(
                "gcs_store_options: a client certificate needs both cert_file and key_file "
                "for gcs_store 'etcd'; expected both or neither"
            )
        if password and not user:
            raise ConfigError(
                "gcs_store_options: 'password' is set for gcs_store 'etcd' without 'user'; "
                "expected the etcd user name in 'user'"
            )
        self._ca = _read("ca_file", ca_file) if ca_file else None
        self._cert = _read("cert_file", cert_file) if cert_file else None
        self._key = _read("key_file", key_file) if key_file else None
        self._index = 0
        self._state: _LoopState | None = None
        self.token = ""
        self._auth_off = False

    @property
    def current(self) -> Member:
        """The member calls go to now."""
        return self.members[self._index]

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._state
        if state is None or state.loop is not loop:
            # Channels of another (finished) loop cannot be closed from here; drop them.
            state = self._state = _LoopState(loop)
            self.token = ""
        return state

    def rpc(self) -> MemberRpc:
        """The stubs of the member in use, for the running event loop."""
        state = self._loop_state()
        index = self._index
        rpc = state.rpcs.get(index)
        if rpc is None:
            rpc = state.rpcs[index] = MemberRpc(self.members[index], index, self._channel(self.members[index]), self)
        return rpc

    def _channel(self, member: Member) -> Any:
        import grpc.aio

        if not member.tls:
            return grpc.aio.insecure_channel(member.target, options=self._options)
        creds = grpc.ssl_channel_credentials(
            root_certificates=self._ca, private_key=self._key, certificate_chain=self._cert
        )
        return grpc.aio.secure_channel(member.target, creds, options=self._options)

    def failed(self, rpc: MemberRpc, error: str) -> None:
        """A call to ``rpc``'s member could not reach it: use the next member (if there is one
        and no other call moved on already)."""
        if len(self.members) > 1 and self._index == rpc.index:
            self._index = (rpc.index + 1) % len(self.members)
            log.info(
                "etcd_member_switch", unreachable=rpc.member.url, next=self.current.url, error=error
            )

    def drop_token(self, token: str) -> None:
        """etcd refused ``token`` (expired, or the auth store changed): get a new one next call."""
        if token and self.token == token:
            self.token = ""

    async def ensure_token(self, rpc: MemberRpc) -> None:
        """Authenticate as ``user`` (on ``rpc``'s member) unless a token is held or no user is
        set. Errors reaching the member propagate (the caller retries elsewhere); a refused
        user/password is a ``ConfigError``."""
        if not self.user or self.token or self._auth_off:
            return
        import grpc

        state = self._loop_state()
        async with state.auth_lock:
            if self.token or self._auth_off:
                return
            from pyetcd import etcdrpc

            request = etcdrpc.AuthenticateRequest(name=self.user, password=self._password)
            try:
                reply = await rpc.auth.Authenticate(request, timeout=self.request_timeout)
            except grpc.aio.AioRpcError as exc:
                details = exc.details() or ""
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "not enabled" in details:
                    # Calls work without a token; say once that the credentials are unused.
                    self._auth_off = True
                    log.warning("etcd_auth_not_enabled", member=rpc.member.url, user=self.user)
                    return
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise ConfigError(
                        f"etcd GCS store at {rpc.member.url}: etcd refused user {self.user!r}: "
                        f"{details}; expected a valid gcs_store_options.user and password"
                    ) from None
                raise
            self.token = reply.token

    async def close(self, close_in_loop: Any) -> None:
        """Close every channel made in the running loop (others are left to the collector)."""
        state, self._state = self._state, None
        if state is None:
            return
        for rpc in state.rpcs.values():
            await close_in_loop(state.loop, rpc.channel.close, "etcd")
